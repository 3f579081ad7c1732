"""Run directories (`<logdir>/<task>-<timestamp>/`), the `latest` pointer, and finding checkpoints."""

from __future__ import annotations

import time
from pathlib import Path

from seqtrain.config import read_toml
from seqtrain.errors import SeqtrainError
from seqtrain.files import atomic_write
from seqtrain.training.checkpoint import BEST, LAST, load_checkpoint

# `<logdir>/latest` is a small text file holding the newest run folder's name. It is not a symlink:
# TensorBoard follows links into folders, so it showed the newest run twice and an extra HParams session.
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
    """Make `<logdir>/latest` name this run; it replaces the `latest` symlink of older logdirs in the same rename."""
    with atomic_write(run.parent / LATEST) as tmp:
        tmp.write_text(run.name + "\n", encoding="utf-8")


def follow_latest(path: Path) -> Path:
    """`path` with a `latest` pointer among its parts replaced by the run it names: runs/latest/best.pt -> runs/<run>/best.pt.

    A `latest` that is a symlink (older logdirs) or a folder is left as it is: it resolves like any path.
    """
    for index, part in enumerate(path.parts):
        pointer = Path(*path.parts[: index + 1])
        if part == LATEST and pointer.is_file():
            name = pointer.read_text(encoding="utf-8", errors="replace").strip()
            if not name or Path(name).name != name or name in (".", ".."):
                raise SeqtrainError(f"{pointer} should hold the name of a run folder beside it, not {name!r}")
            return pointer.with_name(name).joinpath(*path.parts[index + 1 :])
    return path


def latest_run(logdir: str | Path) -> Path:
    """The run folder `<logdir>/latest` names."""
    return follow_latest(Path(logdir) / LATEST)


def resolve_checkpoint(spec: str | None, logdir: str | Path = "runs", prefer: str = BEST) -> Path:
    """A checkpoint from a .pt path, a run folder, a run name inside `logdir`, or 'latest' (the default)."""
    spec = spec or LATEST
    path = Path(spec)
    for candidate in (follow_latest(path), follow_latest(Path(logdir) / spec)):
        if candidate.is_file():
            return candidate
        if candidate.is_dir():
            for name in (prefer, BEST, LAST):
                if (candidate / name).is_file():
                    return candidate / name
            raise SeqtrainError(f"run {candidate} has no checkpoint yet")
    raise SeqtrainError(f"no run or checkpoint '{spec}' (looked in . and {logdir}/); train one with `seqtrain fit`")


def resume_point(run: Path) -> tuple[Path, dict]:
    """The newest loadable checkpoint of a run folder: last.pt, or best.pt if last.pt is missing or damaged."""
    problems = []
    for name in (LAST, BEST):
        try:
            return run / name, load_checkpoint(run / name)
        except SeqtrainError as exc:
            problems.append(str(exc))
    raise SeqtrainError(f"nothing to resume in {run}: {'; '.join(problems)}")


def clear_leftovers(run: Path) -> None:
    """Remove the temporary files of checkpoint saves that a kill -9 cut short (never a finished checkpoint)."""
    for name in (LAST, BEST):
        for leftover in run.glob(f".{name}.*.tmp"):
            leftover.unlink(missing_ok=True)


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
