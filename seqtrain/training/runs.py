"""Run directories (`<logdir>/<task>-<timestamp>/`), the `latest` pointer, and finding checkpoints."""

from __future__ import annotations

import os
import time
from pathlib import Path

from seqtrain.config import read_toml
from seqtrain.errors import SeqtrainError
from seqtrain.training.checkpoint import BEST, LAST

LATEST = "latest"


def new_run_dir(logdir: str | Path, task: str) -> Path:
    root = Path(logdir)
    root.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for suffix in [""] + [f"-{i}" for i in range(1, 1000)]:
        run = root / f"{task}-{stamp}{suffix}"
        try:
            run.mkdir()
            return run
        except FileExistsError:
            continue
    raise SeqtrainError(f"cannot create a run directory in {root}")


def point_latest(run: Path) -> None:
    """Make `<logdir>/latest` name this run (a relative symlink, replaced atomically)."""
    link = run.parent / LATEST
    tmp = run.parent / f".{LATEST}.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(run.name, tmp)
    os.replace(tmp, link)


def resolve_checkpoint(spec: str | None, logdir: str | Path = "runs", prefer: str = BEST) -> Path:
    """A checkpoint from a .pt path, a run folder, a run name inside `logdir`, or 'latest' (the default)."""
    spec = spec or LATEST
    path = Path(spec)
    candidates = [path, Path(logdir) / spec]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
        if candidate.is_dir():
            for name in (prefer, BEST, LAST):
                if (candidate / name).is_file():
                    return candidate / name
            raise SeqtrainError(f"run {candidate} has no checkpoint yet")
    raise SeqtrainError(f"no run or checkpoint '{spec}' (looked in . and {logdir}/); train one with `seqtrain fit`")


def latest_run_of(logdir: str | Path, tasks: set[str]) -> Path:
    """The most recently trained run folder under `logdir` whose task is one of `tasks`."""
    found = []
    for run in Path(logdir).glob("*/config.toml") if Path(logdir).is_dir() else []:
        checkpoints = [run.parent / name for name in (BEST, LAST) if (run.parent / name).is_file()]
        if checkpoints and read_toml(run)["task"] in tasks:
            found.append((max(c.stat().st_mtime for c in checkpoints), run.parent))
    if not found:
        raise SeqtrainError(f"no language-model run in {logdir}/; train one with `seqtrain fit --task shakespeare`")
    return max(found)[1]
