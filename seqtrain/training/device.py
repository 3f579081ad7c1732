"""Choosing the device and the CPU thread count, and moving any batch onto it."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from seqtrain.errors import SeqtrainError
from seqtrain.models.cells import LoopLayer

#: torch's own thread count at start-up (one per core), before any run changed it
CORES = torch.get_num_threads()
#: multiply-adds of one recurrent step (batch x the largest recurrent weight) from which a second thread is used.
#: A step runs as a handful of small parallel regions; when a core is shared, each region waits for the
#: descheduled thread's turn (a few ms), which cost 10-45x on 2 cores. Below about 2^28 multiply-adds
#: (~10 ms of one core) that wait outweighs what the thread saves; every default model here is 4-4000x smaller.
MIN_STEP_FOR_THREADS = 2**28


def recurrent_step_cost(model: nn.Module, batch_size: int) -> int:
    """Multiply-adds of the largest single recurrent step of `model`: batch x hidden-to-hidden weight."""
    largest = 0
    for module in model.modules():
        if isinstance(module, nn.RNNBase):
            largest = max([largest] + [w.numel() for name, w in module.named_parameters() if name.startswith("weight_hh")])
        elif isinstance(module, LoopLayer):
            largest = max(largest, module.hidden_proj.weight.numel())
    return batch_size * largest


def choose_threads(requested: int, model: nn.Module, batch_size: int, device: torch.device) -> tuple[int, str]:
    """(threads, why): `requested` when given, else 1 for recurrent steps too small to gain from a second thread.

    A rule from the model's shape, not a timing probe, so the choice (and so
    the arithmetic of a seeded run) is the same on a busy and a quiet machine.
    """
    if requested:
        return requested, "--threads"
    if device.type != "cpu":
        return CORES, "auto: the GPU does the work"
    cost = recurrent_step_cost(model, batch_size)
    if cost and cost < MIN_STEP_FOR_THREADS:
        return 1, f"auto: recurrent step of {cost / 1e6:,.1f}M multiply-adds"
    return CORES, "auto: large steps" if cost else "auto: no recurrent layer"


def apply_threads(requested: int, model: nn.Module, batch_size: int, device: torch.device) -> str:
    """Set torch's CPU threads for a run (see `choose_threads`); returns how the count was chosen, for the run's first line."""
    threads, why = choose_threads(requested, model, batch_size, device)
    torch.set_num_threads(threads)
    return f"threads {threads} ({why})"


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """torch on one CPU thread inside the block, for figures that must not depend on the machine: a sum split
    over threads adds in another order (the SST-2 TF-IDF row read 81.49% on one thread, 81.60% on two)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX512_BF16 or AMX, torch's own checks of the CPU's flags).

    Elsewhere oneDNN emulates bfloat16 products with float32 ones plus conversions: slower than float32.
    """
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def resolve_precision(precision: str, device: torch.device) -> tuple[str, str]:
    """(the precision a run computes in, a one-line note where that is not `precision`).

    bf16 on a CPU without native bfloat16 falls back to float32: there it would only be slower and less exact.
    """
    if precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        return "32", "--precision bf16: no native bfloat16 on this CPU, training in float32"
    return precision, ""


def resolve_device(spec: str) -> torch.device:
    """auto -> cuda if available else cpu; cuda / cuda:N must exist."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as exc:
        raise SeqtrainError(f"--device must be auto, cpu, cuda or cuda:N, not '{spec}'") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SeqtrainError(f"--device {spec}: CUDA is not available on this machine; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise SeqtrainError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif device.type != "cpu":
        raise SeqtrainError(f"--device must be auto, cpu, cuda or cuda:N, not '{spec}'")
    return device


def move(batch: Any, device: torch.device) -> Any:
    """Move tensors, dataclasses and containers of tensors, or objects with `.to`, onto `device`.

    To a GPU, tensors go from pinned memory with non_blocking copies, so the
    copy of a batch overlaps the kernels still queued before it.
    """
    if isinstance(batch, torch.Tensor):
        if device.type == "cuda" and batch.device.type == "cpu":
            return batch.pin_memory().to(device, non_blocking=True)
        return batch.to(device)
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        return dataclasses.replace(batch, **{k: move(v, device) for k, v in vars(batch).items() if isinstance(v, torch.Tensor)})
    if hasattr(batch, "to"):
        return batch.to(device)
    if isinstance(batch, (tuple, list)):
        return type(batch)(move(item, device) for item in batch)
    if isinstance(batch, dict):
        return {key: move(value, device) for key, value in batch.items()}
    return batch


def detach_state(state: Any) -> Any:
    """Cut the graph behind a carried recurrent state (tensor or tuple of tensors), keeping its values."""
    if isinstance(state, torch.Tensor):
        return state.detach()
    if isinstance(state, (tuple, list)):
        return type(state)(detach_state(s) for s in state)
    return state
