"""Choosing the device, and moving any batch onto it."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from seqtrain.errors import SeqtrainError


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
