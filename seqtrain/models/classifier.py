"""Many-to-one: embed tokens, run the recurrent encoder, pool, classify."""

from __future__ import annotations

import torch
from torch import nn

from seqtrain.config import ClassifierModel
from seqtrain.models.init import keras_dense_, keras_embedding_
from seqtrain.models.recurrent import Pooling, RecurrentEncoder


class SequenceClassifier(nn.Module):
    """Embedding -> RecurrentEncoder -> pooling -> Linear.

    Two classes use one logit (sigmoid + binary cross-entropy, like Keras'
    Dense(1)); more classes, or several labels per text, use one logit each.
    """

    def __init__(self, vocab_size: int, num_classes: int, cfg: ClassifierModel, multi_label: bool = False):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, cfg.embed_dim, padding_idx=0)
        self.embed_dropout = nn.Dropout(cfg.dropout)
        self.encoder = RecurrentEncoder.from_settings(cfg, cfg.embed_dim)
        self.pool = Pooling(cfg.pooling)
        self.head_dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(self.encoder.output_size, 1 if num_classes == 2 and not multi_label else num_classes)
        if cfg.init == "keras":
            keras_embedding_(self.embedding)
            keras_dense_(self.head)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Logits [B] for two classes, [B, C] otherwise."""
        # Only mean pooling sums the outputs over padding; last and max never read them there.
        zero_padding = self.pool.mode == "mean"
        if self.encoder.folds(self.embedding) and not (self.embed_dropout.p and self.training):
            outputs, last = self.encoder(tokens, lengths, zero_padding, embedding=self.embedding)
        else:
            outputs, last = self.encoder(self.embed_dropout(self.embedding(tokens)), lengths, zero_padding)
        logits = self.head(self.head_dropout(self.pool(outputs, last, lengths)))
        return logits.squeeze(-1) if logits.shape[-1] == 1 else logits

    def example_input(self, batch: int = 2, steps: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
        """A dummy batch for the parameter summary."""
        return torch.ones(batch, steps, dtype=torch.long), torch.full((batch,), steps, dtype=torch.long)
