"""Checkpoints: one file per save, written atomically, loaded with weights_only=True."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import torch

from seqtrain.errors import SeqtrainError

BEST, LAST = "best.pt", "last.pt"


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write to a temporary file beside `path`, then rename: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise SeqtrainError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt or foreign file: say which, not a traceback
        raise SeqtrainError(f"cannot load checkpoint {path}: {exc}") from exc


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
