"""Many-to-many and stateful: embed tokens, run a stacked RNN/LSTM/GRU, predict the next token at every step."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from seqtrain.config import LanguageModelModel
from seqtrain.errors import SeqtrainError
from seqtrain.models.recurrent import rnn_from_settings

State = Any  # a tensor [layers, B, H] for RNN/GRU, a (h, c) pair for LSTM


class LanguageModel(nn.Module):
    """Embedding -> dropout -> stacked RNN (dropout between layers) -> dropout -> Linear over the vocabulary.

    `forward` takes and returns the recurrent state, so the caller decides
    whether it is carried (truncated BPTT, generation) or reset. With
    `tie_weights` the output layer shares the embedding matrix (Press & Wolf
    2017), which needs embed_dim == hidden.
    """

    def __init__(self, vocab_size: int, cfg: LanguageModelModel):
        super().__init__()
        if cfg.tie_weights and cfg.embed_dim != cfg.hidden:
            raise SeqtrainError(
                f"--tie-weights needs --embed-dim equal to --hidden (got {cfg.embed_dim} and {cfg.hidden})"
            )
        self.embedding = nn.Embedding(vocab_size, cfg.embed_dim)
        self.drop = nn.Dropout(cfg.dropout)
        between = cfg.dropout if cfg.layers > 1 else 0.0
        self.rnn = rnn_from_settings(cfg, cfg.embed_dim, between)
        self.decoder = nn.Linear(cfg.hidden, vocab_size)
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        if cfg.tie_weights:
            self.decoder.weight = self.embedding.weight
        else:
            nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    def forward(self, tokens: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        """Logits [B, T, V] for the token after each position, and the state after the last one."""
        outputs, state = self.rnn(self.drop(self.embedding(tokens)), state)
        return self.decoder(self.drop(outputs)), state

    def example_input(self, batch: int = 2, steps: int = 100) -> tuple[torch.Tensor]:
        """A dummy batch for the parameter summary."""
        return (torch.zeros(batch, steps, dtype=torch.long),)
