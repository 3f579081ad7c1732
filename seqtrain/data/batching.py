"""Length-bucketed batches of variable-length sequences.

Examples of similar length share a batch, and each batch is padded only to
its own longest member: on CPU this is about three times faster than padding
everything to one maximum length (see scripts/bench_train.py).
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
    lengths: Sequence[int], batch_size: int, generator: torch.Generator | None, bucket_batches: int = 50
) -> list[list[int]]:
    """Index lists of similar-length examples, in shuffled order.

    With a generator, examples are shuffled, cut into pools of `bucket_batches`
    batches, sorted by length inside each pool, batched, and the batches
    shuffled, so every epoch differs but padding stays small. Without one the
    order is deterministic (sorted by length), for evaluation.
    """
    n = len(lengths)
    if generator is None:
        order = sorted(range(n), key=lambda i: lengths[i])
        return [order[i : i + batch_size] for i in range(0, n, batch_size)]
    order = torch.randperm(n, generator=generator).tolist()
    pool = batch_size * bucket_batches
    batches = []
    for start in range(0, n, pool):
        chunk = sorted(order[start : start + pool], key=lambda i: lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    permutation = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in permutation]


def epoch_batches(lengths: Sequence[int], batch_size: int, shuffle: bool, seed: int, epoch: int) -> list[list[int]]:
    """The batches of one epoch: shuffled from (seed, epoch) when training, so a resumed run sees the
    same order; sorted by length otherwise."""
    generator = torch.Generator().manual_seed(seed * 1000 + epoch) if shuffle else None
    return bucket_batches(lengths, batch_size, generator)


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
    ):
        self.sequences = sequences
        self.targets = targets
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.lengths = [len(s) for s in sequences]

    def set_epoch(self, epoch: int) -> None:
        """Shuffle deterministically from (seed, epoch), so a resumed run sees the same order."""
        self.epoch = epoch

    def __len__(self) -> int:
        return (len(self.sequences) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[Batch]:
        for indices in epoch_batches(self.lengths, self.batch_size, self.shuffle, self.seed, self.epoch):
            tokens, lengths = pad_batch([self.sequences[i] for i in indices])
            yield Batch(tokens, lengths, self.targets[indices])
