"""One rule for where a task's data comes from, the same for every task that reads data.

1. `--data PATH` (or its older name `--data-dir`): a local file, folder or
   archive; the task checks it holds what it needs.
2. Otherwise the canonical download into the cache (`--cache-dir`,
   `$SEQTRAIN_CACHE`), from `--mirror` / `$SEQTRAIN_MIRROR` when given.
"""

from __future__ import annotations

from pathlib import Path

from seqtrain.config import SourceData
from seqtrain.errors import SeqtrainError


def local_source(data: SourceData) -> Path | None:
    """The local copy the user named, checked to exist, or None to download."""
    given = [(flag, value) for flag, value in (("--data", data.data), ("--data-dir", data.data_dir)) if value]
    text = getattr(data, "text", None)
    if text:
        given.append(("--text", text))
    if len(given) > 1:
        raise SeqtrainError(f"{' and '.join(flag for flag, _ in given)} name the same thing: give one of them")
    if not given:
        return None
    flag, value = given[0]
    path = Path(value).expanduser()
    if not path.exists():
        raise SeqtrainError(f"{flag} {path} does not exist")
    return path
