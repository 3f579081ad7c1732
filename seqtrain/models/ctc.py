"""CTC: per-frame symbol posteriors from the sequence encoder, decoded greedily or by prefix beam search.

Index 0 is the blank. A label sequence fits an input of T frames (after any
frame stacking) only if T >= its length plus the repeated neighbours it
holds (each repeat needs a blank between); `required_frames` says how many,
so violations are reported, not hidden by `zero_infinity`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import torch
from torch import nn

from seqtrain.config import ModelSettings
from seqtrain.models.init import keras_dense_
from seqtrain.models.signals import SequenceEncoder

BLANK = 0


class CtcModel(nn.Module):
    """SequenceEncoder (bidirectional by default) -> Linear: log-posteriors [B, T', symbols + 1] and T' [B]."""

    def __init__(self, channels: int, symbols: int, cfg: ModelSettings, mean: torch.Tensor, std: torch.Tensor,
                 frontend: nn.Module | None = None, augment: nn.Module | None = None):
        super().__init__()
        self.body = SequenceEncoder(channels, cfg, mean, std, frontend, augment)
        self.head_dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(self.body.output_size, symbols + 1)
        if cfg.init == "keras":
            keras_dense_(self.head)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outputs, _, lengths = self.body(x, lengths, zero_padding=False)
        return torch.log_softmax(self.head(self.head_dropout(outputs)).float(), -1), lengths

    def example_input(self, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
        steps = 16000 if self.body.frontend is not None else 100
        if self.body.frontend is not None:
            return torch.zeros(batch, steps), torch.full((batch,), steps)
        return torch.zeros(batch, steps, len(self.body.normalise.mean)), torch.full((batch,), steps)


def required_frames(labels: Sequence[int]) -> int:
    """The fewest frames CTC can align `labels` to: one per label and one blank between equal neighbours."""
    return len(labels) + sum(a == b for a, b in zip(labels, labels[1:]))


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
    """Best path: the most likely symbol per frame, repeats merged, blanks dropped. [B, T, V] -> label lists."""
    best = log_probs.argmax(-1).cpu()
    out = []
    for row, length in zip(best, lengths.tolist()):
        path = torch.unique_consecutive(row[:length])
        out.append([int(s) for s in path if s != BLANK])
    return out


def _logsumexp(*values: float) -> float:
    top = max(values)
    if top == -math.inf:
        return -math.inf
    return top + math.log(sum(math.exp(v - top) for v in values))


def prefix_beam_decode(log_probs: torch.Tensor, length: int, beam: int = 8) -> list[int]:
    """CTC prefix beam search over one utterance's [T, V] log-posteriors (Hannun et al. 2014, without a language model).

    Each prefix keeps two scores, ending in a blank and ending in a symbol, so
    paths that collapse to the same labels add up; the `beam` best prefixes survive each frame.
    """
    frames = log_probs[:length].double().cpu().tolist()
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, -math.inf)}  # prefix -> (log p blank-end, symbol-end)
    for frame in frames:
        following: dict[tuple[int, ...], list[float]] = defaultdict(lambda: [-math.inf, -math.inf])
        for prefix, (p_blank, p_symbol) in beams.items():
            total = _logsumexp(p_blank, p_symbol)
            entry = following[prefix]
            entry[0] = _logsumexp(entry[0], total + frame[BLANK])
            if prefix:  # the last symbol repeated without a blank stays the same prefix
                entry[1] = _logsumexp(entry[1], p_symbol + frame[prefix[-1]])
            for symbol in range(1, len(frame)):
                extended = following[prefix + (symbol,)]
                if prefix and symbol == prefix[-1]:  # a repeat needs a blank in between
                    extended[1] = _logsumexp(extended[1], p_blank + frame[symbol])
                else:
                    extended[1] = _logsumexp(extended[1], total + frame[symbol])
        ranked = sorted(following.items(), key=lambda item: _logsumexp(*item[1]), reverse=True)[:beam]
        beams = {prefix: (scores[0], scores[1]) for prefix, scores in ranked}
    best = max(beams.items(), key=lambda item: _logsumexp(*item[1]))[0]
    return list(best)


def edit_distance(reference: Sequence, hypothesis: Sequence) -> int:
    """Levenshtein distance: the fewest substitutions, insertions and deletions turning one into the other."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, start=1):
        current = [i] + [0] * len(hypothesis)
        for j, hyp in enumerate(hypothesis, start=1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref != hyp))
        previous = current
    return previous[-1]
