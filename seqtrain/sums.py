"""Additive metric sums that stay on the device between reads.

A step's sums (summed loss, correct predictions, a confusion matrix) may be
tensors on the device: adding them up there costs no host sync, and `floats`
reads every one of them in one transfer when the totals are shown or saved.
Host sums are plain floats; a vector sum under `key` reads as the entries
`key:i` of its non-zero cells, the form checkpoints and metrics use.
"""

from __future__ import annotations

from typing import Any

import torch


def add_sums(into: dict[str, Any], sums: dict[str, Any], keep: torch.Tensor | None = None) -> None:
    """Add a step's sums into `into`; tensors in float64 on their device, zero where `keep` (a 0-dim bool) is False.

    float64 keeps an epoch's total as exact as Python's float sums were, so a
    resumed run adds up bitwise the same figures whether a total was read in between or not.
    """
    for key, value in sums.items():
        if isinstance(value, torch.Tensor):
            value = value.detach().double()
            if keep is not None:
                value = torch.where(keep, value, 0.0)
        elif keep is not None:
            value = keep.double() * float(value)  # a count, never NaN: no host-to-device copy needed
        into[key] = into.get(key, 0.0) + value


def fetch(values: list[Any]) -> list[Any]:
    """Tensors (any shape) as floats or lists of floats, numbers as they are: one transfer per device holding any."""
    out: list[Any] = list(values)
    by_device: dict[torch.device, list[int]] = {}
    for index, value in enumerate(values):
        if isinstance(value, torch.Tensor):
            by_device.setdefault(value.device, []).append(index)
    for indices in by_device.values():
        flat = torch.cat([values[i].detach().double().reshape(-1) for i in indices]).tolist()
        start = 0
        for i in indices:
            size, shape = values[i].numel(), values[i].dim()
            out[i] = flat[start] if shape == 0 else flat[start:start + size]
            start += size
    return out


def floats(sums: dict[str, Any]) -> dict[str, float]:
    """Metric sums as numbers, read from the device in one transfer."""
    return as_floats(list(sums), fetch(list(sums.values())))


def as_floats(keys: list[str], values: list[Any]) -> dict[str, float]:
    """Fetched sums by key; a vector under `key` becomes the entries `key:i` of its non-zero cells, added to any already there."""
    out: dict[str, float] = {}
    for key, value in zip(keys, values):
        if isinstance(value, list):
            for i, cell in enumerate(value):
                if cell:
                    out[f"{key}:{i}"] = out.get(f"{key}:{i}", 0.0) + cell
        else:
            out[key] = out.get(key, 0.0) + float(value)
    return out
