"""Synchronous many-to-many: one tag per token, from word, casing and character features through the
recurrent encoder, scored per token by a softmax or jointly by a linear-chain CRF."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seqtrain.config import TaggerModel
from seqtrain.models.crf import CRF
from seqtrain.models.init import keras_dense_, keras_embedding_
from seqtrain.models.recurrent import RecurrentEncoder, padding_mask

#: casing classes of a token (the word embedding reads lower-cased words), index 0 is padding
CASINGS = ("<pad>", "lower", "upper", "title", "digits", "has-digit", "other")
CASING_DIM = 8


def casing(token: str) -> int:
    if token.isdigit():
        return 4
    if any(c.isdigit() for c in token):
        return 5
    if token.islower():
        return 1
    if token.isupper():
        return 2
    if token[:1].isupper() and token[1:].islower():
        return 3
    return 6


class CharCNN(nn.Module):
    """Each word's characters -> embedding -> one convolution (width 3) -> max over the word (Ma & Hovy 2016)."""

    def __init__(self, chars: int, dim: int, filters: int, dropout: float):
        super().__init__()
        self.embedding = nn.Embedding(chars, dim, padding_idx=0)
        self.dropout = nn.Dropout(dropout)
        self.conv = nn.Conv1d(dim, filters, kernel_size=3, padding=1)
        self.output_size = filters

    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        """chars [B, T, C] (0 pads) -> [B, T, filters]."""
        batch, steps, width = chars.shape
        x = self.dropout(self.embedding(chars.view(-1, width))).transpose(1, 2)
        y = self.conv(x).masked_fill((chars.view(-1, 1, width) == 0), float("-inf")).amax(2)
        return torch.nan_to_num(y, neginf=0.0).view(batch, steps, -1)  # padding words have no character


class CharLSTM(nn.Module):
    """Each word's characters -> embedding -> a BiLSTM; its two final states (Lample et al. 2016)."""

    def __init__(self, chars: int, dim: int, hidden: int, kernel: str, init: str):
        super().__init__()
        self.embedding = nn.Embedding(chars, dim, padding_idx=0)
        self.encoder = RecurrentEncoder("lstm", dim, hidden, 1, True, kernel=kernel, init=init)
        self.output_size = self.encoder.output_size

    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        batch, steps, width = chars.shape
        flat = chars.view(-1, width)
        lengths = (flat != 0).sum(1)
        present = lengths > 0
        out = flat.new_zeros(flat.shape[0], self.output_size, dtype=self.embedding.weight.dtype)
        words = flat[present]
        _, last = self.encoder(self.embedding(words), lengths[present], zero_padding=False)
        out[present] = last.to(out.dtype)
        return out.view(batch, steps, -1)


class SequenceTagger(nn.Module):
    """[word embedding ; casing embedding ; character features] -> RecurrentEncoder -> Linear -> (CRF)."""

    def __init__(self, vocab_size: int, chars: int, tags: list[str], scheme: str, cfg: TaggerModel):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, cfg.embed_dim, padding_idx=0)
        self.casing = nn.Embedding(len(CASINGS), CASING_DIM, padding_idx=0)
        self.chars: nn.Module | None = None
        if cfg.char_encoder == "cnn":
            self.chars = CharCNN(chars, cfg.char_dim, cfg.char_hidden, cfg.dropout)
        elif cfg.char_encoder == "lstm":
            self.chars = CharLSTM(chars, cfg.char_dim, cfg.char_hidden, cfg.kernel, cfg.init)
        width = cfg.embed_dim + CASING_DIM + (self.chars.output_size if self.chars is not None else 0)
        self.input_dropout = nn.Dropout(cfg.dropout)
        self.encoder = RecurrentEncoder.from_settings(cfg, width)
        self.head_dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(self.encoder.output_size, len(tags))
        self.crf = CRF(tags, scheme) if cfg.crf else None
        if cfg.init == "keras":
            keras_embedding_(self.embedding)
            keras_dense_(self.head)

    def forward(self, words: torch.Tensor, casings: torch.Tensor, chars: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Emission scores [B, T, tags]."""
        features = [self.embedding(words), self.casing(casings)]
        if self.chars is not None:
            features.append(self.chars(chars))
        x = self.input_dropout(torch.cat(features, dim=-1))
        outputs, _ = self.encoder(x, lengths, zero_padding=False)
        return self.head(self.head_dropout(outputs))

    def loss_sum(self, emissions: torch.Tensor, tags: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Summed negative log-likelihood of the gold tags: the CRF's per sentence, or cross-entropy per token."""
        if self.crf is not None:
            return self.crf.nll(emissions.float(), tags, lengths).sum()
        mask = padding_mask(lengths, tags.shape[1])
        return F.cross_entropy(emissions[mask].float(), tags[mask], reduction="sum")

    def decode(self, emissions: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The predicted tag ids [B, T]: Viterbi with a CRF, else each token's most likely tag."""
        if self.crf is not None:
            return self.crf.decode(emissions.float(), lengths)
        return emissions.argmax(-1) * padding_mask(lengths, emissions.shape[1])

    def example_input(self, batch: int = 2, steps: int = 30) -> tuple[torch.Tensor, ...]:
        """A dummy batch for the parameter summary."""
        words = torch.ones(batch, steps, dtype=torch.long)
        return words, words, torch.ones(batch, steps, 8, dtype=torch.long), torch.full((batch,), steps, dtype=torch.long)
