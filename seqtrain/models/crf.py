"""A linear-chain conditional random field over per-token scores: log-likelihood and Viterbi decoding.

Batched and masked: every sentence of a batch advances one time step per
iteration (the loop runs over time, never over sentences), and a sentence
past its end carries its state unchanged. Transitions the tag scheme forbids
(`O` -> `I-X` under IOB2, `B-X` -> `O` under BIOES, ...) are fixed at a large
negative score, so neither training nor decoding ever puts weight on them.

Written here rather than taken from pytorch-crf: the forward algorithm and
Viterbi are some 100 lines, the scheme's constraints and the project's
padding convention (right padding, lengths) plug in directly, and the
project keeps torch as its only numeric dependency; pytorch-crf (last
release 2019) has no constraints and wants a mask tensor per batch.
"""

from __future__ import annotations

import torch
from torch import nn

from seqtrain.data.conll import split_tag

#: the score of a forbidden transition: finite, so a fully masked row's log-sum-exp stays finite
FORBIDDEN = -10000.0


def allowed_transitions(tags: list[str], scheme: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bool masks: start [K] (may open a sentence), moves [K, K] (from row to column), end [K] (may close one).

    IOB2: I-X only after B-X or I-X. BIOES: I-X/E-X only after B-X/I-X of X; after B-X/I-X only I-X/E-X
    of X; a sentence neither starts inside nor ends inside an entity. Plain tags and IOB1 allow everything
    (IOB1's I-X after O opens an entity).
    """
    k = len(tags)
    start = torch.ones(k, dtype=torch.bool)
    end = torch.ones(k, dtype=torch.bool)
    moves = torch.ones(k, k, dtype=torch.bool)
    if scheme not in ("iob2", "bioes"):
        return start, moves, end
    parts = [split_tag(tag) for tag in tags]
    for j, (tag, type_) in enumerate(parts):
        inside = tag in ("I", "E") if scheme == "bioes" else tag == "I"
        if inside:
            start[j] = False
        if scheme == "bioes" and tag in ("B", "I"):
            end[j] = False
        for i, (prev, prev_type) in enumerate(parts):
            open_ = prev in ("B", "I") if scheme == "bioes" else False
            if inside:
                moves[i, j] = prev in ("B", "I") and prev_type == type_
            elif open_:
                moves[i, j] = False
    return start, moves, end


class CRF(nn.Module):
    """Transition scores between K tags, and start/end scores, over emissions [B, T, K] of right-padded batches."""

    def __init__(self, tags: list[str], scheme: str):
        super().__init__()
        k = len(tags)
        self.transitions = nn.Parameter(torch.zeros(k, k))
        self.start = nn.Parameter(torch.zeros(k))
        self.end = nn.Parameter(torch.zeros(k))
        start, moves, end = allowed_transitions(tags, scheme)
        self.register_buffer("start_bias", torch.where(start, 0.0, FORBIDDEN), persistent=False)
        self.register_buffer("move_bias", torch.where(moves, 0.0, FORBIDDEN), persistent=False)
        self.register_buffer("end_bias", torch.where(end, 0.0, FORBIDDEN), persistent=False)

    def scores(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.start + self.start_bias, self.transitions + self.move_bias, self.end + self.end_bias

    def nll(self, emissions: torch.Tensor, tags: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood of the gold `tags` [B, T] per sentence [B]."""
        return self.log_partition(emissions, lengths) - self.path_score(emissions, tags, lengths)

    def path_score(self, emissions: torch.Tensor, tags: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Score of each sentence's given tag path [B]."""
        start, moves, end = self.scores()
        batch, steps, _ = emissions.shape
        mask = torch.arange(steps, device=emissions.device).unsqueeze(0) < lengths.unsqueeze(1)
        emitted = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)
        score = (emitted * mask).sum(1) + start[tags[:, 0]]
        if steps > 1:
            moved = moves[tags[:, :-1], tags[:, 1:]]
            score = score + (moved * mask[:, 1:]).sum(1)
        last = tags.gather(1, (lengths - 1).unsqueeze(1)).squeeze(1)
        return score + end[last]

    def log_partition(self, emissions: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """log Z of each sentence [B]: the forward algorithm, one step of the whole batch per iteration."""
        start, moves, end = self.scores()
        alpha = start + emissions[:, 0]
        for t in range(1, emissions.shape[1]):
            step = torch.logsumexp(alpha.unsqueeze(2) + moves, dim=1) + emissions[:, t]
            alpha = torch.where((t < lengths).unsqueeze(1), step, alpha)
        return torch.logsumexp(alpha + end, dim=1)

    def decode(self, emissions: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The best tag path of each sentence [B, T] (Viterbi; 0 at padding)."""
        start, moves, end = self.scores()
        batch, steps, _ = emissions.shape
        score = start + emissions[:, 0]
        pointers = []
        for t in range(1, steps):
            best, back = (score.unsqueeze(2) + moves).max(dim=1)
            live = (t < lengths).unsqueeze(1)
            score = torch.where(live, best + emissions[:, t], score)
            # past a sentence's end, each tag points to itself, so the walk back passes through unchanged
            pointers.append(torch.where(live, back, torch.arange(back.shape[1], device=back.device)))
        best_last = (score + end).argmax(dim=1)
        path = [best_last]
        for back in reversed(pointers):
            path.append(back.gather(1, path[-1].unsqueeze(1)).squeeze(1))
        path.reverse()
        out = torch.stack(path, dim=1)
        mask = torch.arange(steps, device=out.device).unsqueeze(0) < lengths.unsqueeze(1)
        return out * mask
