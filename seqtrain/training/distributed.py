"""Data-parallel training over processes that torchrun starts: one model, each rank a part of every batch.

`torchrun --nproc-per-node N -m seqtrain fit ...` sets RANK, WORLD_SIZE and
LOCAL_RANK; `join` reads them and opens torch.distributed's process group
(NCCL on CUDA, gloo on CPU). Every rank iterates the same seeded batches and
keeps its own rows of each one (`part`): for a language model those rows are
its own columns of the token stream, so the state it carries between
truncated-BPTT chunks is the true history of those columns. Gradients are
averaged by DistributedDataParallel; the trainer weighs each rank's loss by
its share of the batch, so a step equals a one-process step over the whole
batch. Without torchrun the world is one process and nothing here talks to
another. A rank that stops answering (frozen, stopped) is given
$SEQTRAIN_DIST_TIMEOUT seconds (default 300, not gloo's 30 minutes); then the
others stop with one line saying which rank they were waiting for.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from datetime import timedelta
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from seqtrain.errors import SeqtrainError


@dataclass(frozen=True)
class World:
    """This process's place among the ranks of one training run."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0 alone writes the run folder, checkpoints, TensorBoard and progress."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.size > 1


def launched_size() -> int:
    """How many processes torchrun started for this run (WORLD_SIZE; 1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched_rank() -> int:
    """This process's rank among those torchrun started (RANK; 0 without torchrun), known before the group opens."""
    return int(os.environ.get("RANK", "0"))


TIMEOUT_ENV = "SEQTRAIN_DIST_TIMEOUT"


def timeout_seconds() -> float:
    """How long a rank waits for the others in one collective ($SEQTRAIN_DIST_TIMEOUT, default 300 s)."""
    value = os.environ.get(TIMEOUT_ENV, "300")
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise SeqtrainError(f"{TIMEOUT_ENV}={value!r} must be a positive number of seconds")
    return seconds


def stalled(world: World, exc: BaseException) -> SeqtrainError | None:
    """One line for a collective that timed out waiting for another rank (None for any other error)."""
    if not world.parallel or "timed out" not in str(exc).lower() and "timeout" not in str(exc).lower():
        return None
    others = [rank for rank in range(world.size) if rank != world.rank]
    waited = f"rank {others[0]}" if len(others) == 1 else f"one of ranks {', '.join(map(str, others))}"
    return SeqtrainError(
        f"rank {world.rank}: {waited} stopped answering for {timeout_seconds():g} s ({TIMEOUT_ENV}); check that "
        "process, then continue with --resume"
    )


def join(device: str) -> World:
    """The world torchrun describes in the environment (one process without it), its process group opened."""
    size = launched_size()
    if size <= 1:
        return World()
    world = World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        cuda = device != "cpu" and torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=timeout_seconds()))
    return world


def leave(world: World) -> None:
    if world.parallel and dist.is_initialized():
        dist.destroy_process_group()


def rank_device(world: World, device: torch.device) -> torch.device:
    """Each rank of a CUDA run uses the GPU torchrun gave it (LOCAL_RANK)."""
    if world.parallel and device.type == "cuda":
        return torch.device("cuda", world.local_rank)
    return device


class DataParallel(torch.nn.parallel.DistributedDataParallel):
    """DistributedDataParallel through which a task's step still reads its model's attributes (`model.target_std`)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The model as training steps call it: in DataParallel on several ranks (it starts from rank 0's weights)."""
    return DataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


# ------------------------------------------------------------ batch parts
def rows(batch: Any) -> int:
    """Examples (or token-stream columns) in a batch: the first dimension of its first tensor."""
    if isinstance(batch, torch.Tensor):
        return batch.shape[0]
    if dataclasses.is_dataclass(batch):
        return rows(next(v for v in vars(batch).values() if isinstance(v, torch.Tensor)))
    if isinstance(batch, (tuple, list)):
        return rows(batch[0])
    raise TypeError(f"cannot split a batch of type {type(batch).__name__}")


def part(batch: Any, index: int, parts: int) -> Any:
    """Rows [index/parts, (index+1)/parts) of a batch (tensors, per-row lists, tuples and dataclasses of them).

    Sizes differ by at most one row; a part of an undersized batch may be empty.
    """
    total = rows(batch)
    start, stop = total * index // parts, total * (index + 1) // parts
    return _take(batch, start, stop, top=True)


def _take(value: Any, start: int, stop: int, top: bool = False) -> Any:
    if isinstance(value, torch.Tensor):
        return value[start:stop]
    if dataclasses.is_dataclass(value):
        return dataclasses.replace(value, **{k: _take(v, start, stop) for k, v in vars(value).items()})
    if isinstance(value, (tuple, list)):
        # a batch given as (inputs, targets) splits each member; a list inside a batch holds one item per row
        return type(value)(_take(v, start, stop) for v in value) if top else value[start:stop]
    return value


# ------------------------------------------------------------ collectives
def total(world: World, values: Sequence[float]) -> list[float]:
    """Element-wise sums over all ranks (float64, so counts stay exact)."""
    if not world.parallel:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=_collective_device())
    dist.all_reduce(tensor)
    return tensor.tolist()


def gather(world: World, value: Any) -> list[Any]:
    """Every rank's `value`, in rank order, on every rank (picklable objects: metric sums, states)."""
    if not world.parallel:
        return [value]
    out: list[Any] = [None] * world.size
    dist.all_gather_object(out, value)
    return out


def sum_dicts(world: World, sums: dict[str, float], count: int) -> tuple[dict[str, float], int]:
    """A pass's metric sums and count added over all ranks, so the figures are those of the whole data."""
    if not world.parallel:
        return sums, count
    merged: dict[str, float] = {}
    grand = 0
    for their_sums, their_count in gather(world, (sums, count)):
        for key, value in their_sums.items():
            merged[key] = merged.get(key, 0.0) + value
        grand += their_count
    return merged, grand


def share(world: World, value: Any) -> Any:
    """Rank 0's `value` on every rank."""
    if not world.parallel:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(world: World) -> None:
    if world.parallel:
        dist.barrier()


def digest(model: torch.nn.Module) -> str:
    """A hash of every weight's bytes: ranks that train one model must agree on it bit for bit."""
    sha = hashlib.sha256()
    for value in model.state_dict().values():
        sha.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return sha.hexdigest()


def check_batch(world: World, batch_size: int, accumulate: int) -> None:
    """Every rank and micro-batch needs rows of its own."""
    parts = world.size * accumulate
    if batch_size < parts:
        raise SeqtrainError(
            f"--batch-size {batch_size} cannot be split over {world.size} process(es) x --accumulate {accumulate}; "
            f"use a batch size of at least {parts}"
        )


def _collective_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
