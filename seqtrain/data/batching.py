"""Length-bucketed batches of variable-length sequences.

Examples of similar length share a batch, and each batch is padded only to
its own longest member: on CPU this is about three times faster than padding
everything to one maximum length (see scripts/bench_train.py). With a token
budget, a batch also stops growing before its padded size (examples x the
longest one's length) passes the budget, so a long text gets a small batch,
or one of its own, and a batch's memory does not depend on the data.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch


@dataclass
class Batch:
    """Padded token ids [B, T] (padding 0), true lengths [B] and targets [B]."""

    tokens: torch.Tensor
    lengths: torch.Tensor
    targets: torch.Tensor

    def to(self, device: torch.device) -> Batch:
        return Batch(self.tokens.to(device), self.lengths.to(device), self.targets.to(device))

    def __len__(self) -> int:
        return self.tokens.shape[0]


def bucket_batches(
    lengths: Sequence[int], batch_size: int, generator: torch.Generator | None, bucket_batches: int = 50,
    max_tokens: int = 0,
) -> list[list[int]]:
    """Index lists of similar-length examples, in shuffled order.

    With a generator, examples are shuffled, cut into pools of `bucket_batches`
    batches, sorted by length inside each pool, batched, and the batches
    shuffled, so every epoch differs but padding stays small. Without one the
    order is deterministic (sorted by length), for evaluation. With
    `max_tokens`, no batch's padded size passes it (but a longer example gets
    a batch of its own).
    """
    n = len(lengths)
    if generator is None:
        return _cut(sorted(range(n), key=lambda i: lengths[i]), lengths, batch_size, max_tokens)
    order = torch.randperm(n, generator=generator).tolist()
    pool = batch_size * bucket_batches
    batches = []
    for start in range(0, n, pool):
        batches.extend(_cut(sorted(order[start : start + pool], key=lambda i: lengths[i]), lengths, batch_size, max_tokens))
    permutation = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in permutation]


def _cut(order: list[int], lengths: Sequence[int], batch_size: int, max_tokens: int) -> list[list[int]]:
    """Consecutive runs of `order` (sorted by length) of at most `batch_size` examples and, with
    `max_tokens`, at most that many padded tokens."""
    if not max_tokens:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    batches: list[list[int]] = []
    batch: list[int] = []
    for i in order:
        if batch and (len(batch) == batch_size or (len(batch) + 1) * max(lengths[i], 1) > max_tokens):
            batches.append(batch)
            batch = []
        batch.append(i)
    if batch:
        batches.append(batch)
    return batches


def epoch_batches(
    lengths: Sequence[int], batch_size: int, shuffle: bool, seed: int, epoch: int, max_tokens: int = 0
) -> list[list[int]]:
    """The batches of one epoch: shuffled from (seed, epoch) when training, so a resumed run sees the
    same order; sorted by length otherwise."""
    generator = torch.Generator().manual_seed(seed * 1000 + epoch) if shuffle else None
    return bucket_batches(lengths, batch_size, generator, max_tokens=max_tokens)


def pad_batch(sequences: Sequence[torch.Tensor], pad_to: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad 1-D id tensors with 0 to the longest (or `pad_to`); return (tokens, lengths)."""
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    width = pad_to or int(lengths.max())
    tokens = torch.zeros(len(sequences), width, dtype=torch.long)
    for row, seq in enumerate(sequences):
        tokens[row, : len(seq)] = seq
    return tokens, lengths


class SequenceLoader:
    """Re-iterable batches over (sequence, target) pairs; a new shuffle each epoch, seeded."""

    def __init__(
        self,
        sequences: Sequence[torch.Tensor],
        targets: torch.Tensor,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        max_tokens: int = 0,
    ):
        self.sequences = sequences
        self.targets = targets
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.lengths = [len(s) for s in sequences]
        self.max_tokens = max_tokens
        self._batches: tuple[int, list[list[int]]] | None = None  # (epoch, its batches)

    def set_epoch(self, epoch: int) -> None:
        """Shuffle deterministically from (seed, epoch), so a resumed run sees the same order."""
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        """This epoch's index lists (computed once per epoch)."""
        if self._batches is None or self._batches[0] != self.epoch:
            found = epoch_batches(self.lengths, self.batch_size, self.shuffle, self.seed, self.epoch, self.max_tokens)
            self._batches = (self.epoch, found)
        return self._batches[1]

    def __len__(self) -> int:
        if self.max_tokens:  # the budget decides how many batches there are
            return len(self.batches())
        return (len(self.sequences) + self.batch_size - 1) // self.batch_size

    def pad(self, sequences: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch's padded inputs and their lengths: token ids here; loaders of other inputs override it."""
        return pad_batch(sequences)

    def __iter__(self) -> Iterator[Batch]:
        for indices in self.batches():
            inputs, lengths = self.pad([self.sequences[i] for i in indices])
            yield Batch(inputs, lengths, self.targets[indices])
