"""Many-to-one over sequences of numeric vectors: normalise, stack frames, encode, pool, classify (or regress).

The input is feature vectors per step instead of token ids, fed to the same
padding-exact RecurrentEncoder the text classifier uses. The per-channel
normalisation of the training split lives in the model as buffers, so a
checkpoint classifies raw values; an optional front-end (models/features.py)
turns waveforms into log-mel or MFCC frames on the model's device first.
"""

from __future__ import annotations

import torch
from torch import nn

from seqtrain.config import ModelSettings
from seqtrain.models.init import keras_dense_
from seqtrain.models.recurrent import Pooling, RecurrentEncoder, padding_mask


class Normalise(nn.Module):
    """(x - mean) / std per channel with the training split's statistics; padding stays zero."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean.float().clone())
        self.register_buffer("std", std.float().clone())

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = padding_mask(lengths.to(x.device), x.shape[1]).unsqueeze(-1)
        return ((x - self.mean) / self.std).masked_fill(~mask, 0.0)


def stack_frames(x: torch.Tensor, lengths: torch.Tensor, every: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, T, C] -> [B, ceil(T/every), every*C]: each group of `every` steps becomes one step (frame subsampling).

    A sequence's last group is completed with zeros (its padding), the same in any batch. Integer arithmetic on
    the shape and a concatenation, not math.ceil and a pad of Python ints, so an exported graph (seqtrain/export)
    keeps the number of steps as a variable instead of the traced batch's.
    """
    if every == 1:
        return x, lengths
    batch, steps, channels = x.shape
    width = (steps + every - 1) // every * every
    x = torch.cat([x, x.new_zeros(batch, width - steps, channels)], 1)
    return x.reshape(batch, width // every, every * channels), (lengths + every - 1) // every


class SequenceEncoder(nn.Module):
    """Front-end (optional) -> normalisation -> frame stacking -> RecurrentEncoder: per-step outputs and last states."""

    def __init__(self, channels: int, cfg: ModelSettings, mean: torch.Tensor, std: torch.Tensor,
                 frontend: nn.Module | None = None, augment: nn.Module | None = None):
        super().__init__()
        self.frontend = frontend
        self.normalise = Normalise(mean, std)
        self.augment = augment
        self.every = cfg.stack
        self.encoder = RecurrentEncoder(
            cfg.cell, channels * cfg.stack, cfg.hidden, cfg.layers, cfg.bidirectional, cfg.dropout, "off",
            cfg.recurrent_dropout, cfg.layer_norm, cfg.kernel, cfg.init,
        )

    @property
    def output_size(self) -> int:
        return self.encoder.output_size

    def frames(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder's input: normalised (front-end) features, stacked; and their lengths."""
        if self.frontend is not None:
            x, lengths = self.frontend(x, lengths)
        x = self.normalise(x, lengths)
        if self.augment is not None:
            x = self.augment(x, lengths)
        return stack_frames(x, lengths, self.every)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, zero_padding: bool = True):
        x, lengths = self.frames(x, lengths)
        outputs, last = self.encoder(x, lengths, zero_padding)
        return outputs, last, lengths


class SignalClassifier(nn.Module):
    """SequenceEncoder -> pooling -> Linear: logits [B, classes]."""

    def __init__(self, channels: int, classes: int, cfg: ModelSettings, mean: torch.Tensor, std: torch.Tensor,
                 frontend: nn.Module | None = None, augment: nn.Module | None = None):
        super().__init__()
        self.body = SequenceEncoder(channels, cfg, mean, std, frontend, augment)
        self.pool = Pooling(cfg.pooling)
        self.head_dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(self.body.output_size, classes)
        self.example_steps = 16000 if frontend is not None else 100
        if cfg.init == "keras":
            keras_dense_(self.head)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        outputs, last, lengths = self.body(x, lengths, self.pool.mode == "mean")
        return self.head(self.head_dropout(self.pool(outputs, last, lengths)))

    def example_input(self, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
        """A dummy batch for the parameter summary: waveforms for an audio model, vectors otherwise."""
        steps = self.example_steps
        if self.body.frontend is not None:
            return torch.zeros(batch, steps), torch.full((batch,), steps)
        return torch.zeros(batch, steps, len(self.body.normalise.mean)), torch.full((batch,), steps)


class SignalRegressor(SignalClassifier):
    """SequenceEncoder -> pooling -> Linear to one number [B], in the target's own units: the head learns the
    target scaled by the training split's mean and std (buffers), and its output is scaled back."""

    def __init__(self, channels: int, cfg: ModelSettings, mean: torch.Tensor, std: torch.Tensor,
                 target_mean: float, target_std: float):
        super().__init__(channels, 1, cfg, mean, std)
        self.register_buffer("target_mean", torch.tensor(float(target_mean)))
        self.register_buffer("target_std", torch.tensor(float(target_std)))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        # scaled back in float32: under half-precision autocast a value near 100 would keep steps of 0.5
        return super().forward(x, lengths).squeeze(-1).float() * self.target_std + self.target_mean
