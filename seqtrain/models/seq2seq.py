"""Encoder-decoder with optional attention, teacher forcing, greedy and beam decoding.

The encoder is the padding-exact `RecurrentEncoder`; its final state (both
directions when bidirectional) passes through a tanh bridge into every
decoder layer's initial state. Attention, when on, reads the decoder's output
at each step (Luong et al. 2015 placement) with a dot-product ("dot", keys
projected to the decoder size) or additive ("bahdanau", Bahdanau et al. 2015)
score, masked at source padding, and the decoder output and context are
combined before the softmax. Because the decoder input at step t is only the
previous token, teacher forcing 1.0 runs the whole target in one call; any
lower ratio runs step by step, choosing per token between the true previous
token and the model's own previous prediction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from seqtrain.config import Seq2SeqModel
from seqtrain.models.recurrent import RecurrentEncoder, padding_mask, rnn_from_settings

ATTENTION = ("none", "dot", "bahdanau")


class Attention(nn.Module):
    """Scores a query against every encoder position and returns the weighted sum of the encoder outputs."""

    def __init__(self, kind: str, query_size: int, key_size: int):
        super().__init__()
        self.kind = kind
        if kind == "dot":
            self.key = nn.Linear(key_size, query_size, bias=False)
        elif kind == "bahdanau":
            self.key = nn.Linear(key_size, query_size, bias=False)
            self.query = nn.Linear(query_size, query_size)
            self.v = nn.Linear(query_size, 1, bias=False)
        else:
            raise ValueError(f"unknown attention {kind!r}")

    def forward(self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor):
        """query [B, T, Hq], projected keys [B, S, Hq], values [B, S, Hv], mask [B, S] -> context [B, T, Hv], weights [B, T, S]."""
        if self.kind == "dot":
            scores = query @ keys.transpose(1, 2)
        else:
            scores = self.v(torch.tanh(self.query(query).unsqueeze(2) + keys.unsqueeze(1))).squeeze(-1)
        weights = torch.softmax(scores.masked_fill(~mask.unsqueeze(1), float("-inf")), dim=-1)
        return weights @ values, weights


@dataclass
class Memory:
    """What the decoder needs from the encoder for one batch."""

    outputs: torch.Tensor  # [B, S, Henc]
    keys: torch.Tensor | None  # projected once, reused every step
    mask: torch.Tensor  # [B, S], True at real tokens
    state: torch.Tensor | tuple[torch.Tensor, torch.Tensor]

    def select(self, index: torch.Tensor) -> Memory:
        """Rows `index` of the batch (beam search expands and reorders them)."""
        return Memory(
            self.outputs[index],
            None if self.keys is None else self.keys[index],
            self.mask[index],
            _select_state(self.state, index),
        )


def _select_state(state, index: torch.Tensor):
    if isinstance(state, tuple):
        return tuple(s[:, index] for s in state)
    return state[:, index]


class Seq2Seq(nn.Module):
    def __init__(self, source_vocab: int, target_vocab: int, cfg: Seq2SeqModel, bos: int, eos: int):
        super().__init__()
        self.bos, self.eos = bos, eos
        self.cell, self.layers, self.hidden = cfg.cell, cfg.layers, cfg.hidden
        self.source_embedding = nn.Embedding(source_vocab, cfg.embed_dim, padding_idx=0)
        self.target_embedding = nn.Embedding(target_vocab, cfg.embed_dim, padding_idx=0)
        self.dropout = nn.Dropout(cfg.dropout)
        self.encoder = RecurrentEncoder.from_settings(cfg, cfg.embed_dim)
        states = 2 if cfg.cell == "lstm" else 1
        self.bridge = nn.Linear(self.encoder.output_size, states * cfg.layers * cfg.hidden)
        between = cfg.dropout if cfg.layers > 1 else 0.0
        self.decoder = rnn_from_settings(cfg, cfg.embed_dim, between)
        self.attention = None if cfg.attention == "none" else Attention(cfg.attention, cfg.hidden, self.encoder.output_size)
        self.combine = nn.Linear(cfg.hidden + self.encoder.output_size, cfg.hidden) if self.attention else None
        self.out = nn.Linear(cfg.hidden, target_vocab)

    # ---------------------------------------------------------------- pieces
    def encode(self, source: torch.Tensor, lengths: torch.Tensor) -> Memory:
        outputs, last = self.encoder(self.dropout(self.source_embedding(source)), lengths)
        init = torch.tanh(self.bridge(last)).view(last.shape[0], -1, self.layers, self.hidden)
        init = init.permute(1, 2, 0, 3).contiguous()  # [states, layers, B, H]
        state = (init[0], init[1]) if self.cell == "lstm" else init[0]
        keys = self.attention.key(outputs) if self.attention else None
        return Memory(outputs, keys, padding_mask(lengths.to(source.device), source.shape[1]), state)

    def decode(self, inputs: torch.Tensor, state, memory: Memory):
        """Decoder logits [B, T, V] for input tokens [B, T] (T may be 1), and the new state."""
        output, state = self.decoder(self.dropout(self.target_embedding(inputs)), state)
        if self.attention is not None:
            context, _ = self.attention(output, memory.keys, memory.outputs, memory.mask)
            output = torch.tanh(self.combine(torch.cat([output, context], dim=-1)))
        return self.out(self.dropout(output)), state

    def _choosable(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits with padding and <bos> ruled out: what decoding may pick as the next token."""
        logits = logits.clone()
        logits[..., 0] = float("-inf")
        logits[..., self.bos] = float("-inf")
        return logits

    # -------------------------------------------------------------- training
    def forward(
        self, source: torch.Tensor, source_lengths: torch.Tensor, target: torch.Tensor, teacher_forcing: float = 1.0
    ) -> torch.Tensor:
        """Logits [B, T, V] for predicting `target` (which ends in <eos>).

        Step t reads the true token t-1 with probability `teacher_forcing`,
        drawn independently for every token, else the model's own argmax
        prediction from step t-1 (not back-propagated through).
        """
        memory = self.encode(source, source_lengths)
        bos = torch.full_like(target[:, :1], self.bos)
        if teacher_forcing >= 1.0:
            return self.decode(torch.cat([bos, target[:, :-1]], dim=1), memory.state, memory)[0]
        return self._scheduled(target, memory, bos, teacher_forcing)

    def _scheduled(self, target: torch.Tensor, memory: Memory, bos: torch.Tensor, ratio: float) -> torch.Tensor:
        state, token, steps = memory.state, bos, []
        for t in range(target.shape[1]):
            logits, state = self.decode(token, state, memory)
            steps.append(logits)
            own = self._choosable(logits).argmax(-1)
            true = target[:, t : t + 1]
            token = torch.where(torch.rand(true.shape, device=true.device) < ratio, true, own)
        return torch.cat(steps, dim=1)

    # -------------------------------------------------------------- decoding
    @torch.no_grad()
    def greedy(self, source: torch.Tensor, source_lengths: torch.Tensor, max_len: int) -> torch.Tensor:
        """Token ids [B, <=max_len]: each step's argmax fed back; <eos> then padding (0) once a row ends."""
        memory = self.encode(source, source_lengths)
        state = memory.state
        token = torch.full((source.shape[0], 1), self.bos, dtype=torch.long, device=source.device)
        done = torch.zeros(source.shape[0], dtype=torch.bool, device=source.device)
        out = []
        for _ in range(max_len):
            logits, state = self.decode(token, state, memory)
            token = self._choosable(logits).argmax(-1)
            out.append(token.squeeze(1).masked_fill(done, 0))
            done |= token.squeeze(1) == self.eos
            if done.all():
                break
        return torch.stack(out, dim=1)

    @torch.no_grad()
    def beam_search(
        self, source: torch.Tensor, source_lengths: torch.Tensor, beam: int, max_len: int, length_penalty: float = 1.0
    ) -> list[list[int]]:
        """Best token ids per source (without <eos>), from a beam of `beam` hypotheses.

        Finished hypotheses are ranked by log-probability / length**length_penalty
        (0 = raw log-probability, 1 = per-token mean). The search for one
        source stops when `beam` hypotheses have finished or at `max_len`.
        With beam 1 this is exactly greedy decoding.
        """
        memory_all = self.encode(source, source_lengths)
        return [self._beam_one(memory_all.select(torch.tensor([row], device=source.device)), beam, max_len, length_penalty)
                for row in range(source.shape[0])]

    def _beam_one(self, memory: Memory, beam: int, max_len: int, alpha: float) -> list[int]:
        device = memory.outputs.device
        tokens = [[]]  # alive hypotheses
        scores = torch.zeros(1, device=device)
        state = memory.state
        finished: list[tuple[float, list[int]]] = []
        for step in range(max_len):
            rows = torch.zeros(len(tokens), dtype=torch.long, device=device)
            last = torch.tensor([[t[-1] if t else self.bos] for t in tokens], device=device)
            logits, state = self.decode(last, state, memory.select(rows))
            candidates = (scores.unsqueeze(1) + torch.log_softmax(self._choosable(logits[:, -1].float()), -1)).flatten()
            top_scores, top_index = candidates.topk(min(2 * beam, candidates.numel()))
            vocab = logits.shape[-1]
            keep, new_scores = [], []
            for score, index in zip(top_scores.tolist(), top_index.tolist()):
                parent, token = divmod(index, vocab)
                if token == self.eos:
                    finished.append((score / max(step + 1, 1) ** alpha, tokens[parent]))
                else:
                    keep.append((parent, tokens[parent] + [token]))
                    new_scores.append(score)
                if len(keep) == beam:
                    break
            if len(finished) >= beam:
                break
            parents = torch.tensor([p for p, _ in keep], device=device)
            tokens = [t for _, t in keep]
            scores = torch.tensor(new_scores, device=device)
            state = _select_state(state, parents)
        if not finished:  # max_len reached: rank the alive ones
            finished = [(s / len(t) ** alpha, t) for s, t in zip(scores.tolist(), tokens)]
        return max(finished, key=lambda item: item[0])[1]

    def example_input(self, batch: int = 2, steps: int = 20) -> tuple[torch.Tensor, ...]:
        """A dummy batch for the parameter summary."""
        tokens = torch.full((batch, steps), 4, dtype=torch.long)
        return tokens, torch.full((batch,), steps, dtype=torch.long), tokens
