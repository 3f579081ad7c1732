"""Checkpoints: one file per save, written atomically, loaded with weights_only=True."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch

from seqtrain.errors import SeqtrainError
from seqtrain.files import atomic_write

BEST, LAST = "best.pt", "last.pt"


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Written atomically: a reader never sees half a file, and a failed save keeps the previous one."""
    with atomic_write(path) as temporary:
        torch.save(payload, temporary)


#: the marker every seqtrain checkpoint carries, checked before anything else is read
MARKER = "seqtrain-checkpoint"
#: 3: a position inside an epoch (step checkpoints: pass sums, carried state, each rank's RNG);
#: 2: per-task settings and typed metadata, saved at epoch ends (read as 3 at position 0); 1 (no marker): the first layout
FORMAT = 3
READABLE = (2, 3)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint's contents, or one line saying why the file is not one this seqtrain reads."""
    if not path.is_file():
        raise SeqtrainError(f"checkpoint not found: {path}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a corrupt, foreign or hostile file: never suggest the unsafe loader
        raise SeqtrainError(f"{path} is not a seqtrain checkpoint (or it is damaged): it cannot be loaded safely") from None
    if not isinstance(blob, dict) or blob.get("marker") != MARKER:
        if isinstance(blob, dict) and {"config", "meta", "model", "epoch"} <= blob.keys():
            raise SeqtrainError(
                f"{path} was written by an earlier seqtrain (before settings per task); "
                "retrain it with this version, or evaluate it with seqtrain 0.1"
            )
        raise SeqtrainError(f"{path} is not a seqtrain checkpoint")
    if blob.get("format") not in READABLE:
        raise SeqtrainError(f"{path} has checkpoint format {blob.get('format')}; this seqtrain reads formats {READABLE[0]} to {FORMAT}")
    return blob


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
