"""One rule for where a task's data comes from, the same for every task that reads data.

1. `--data PATH` (or its older name `--data-dir`): a local file, folder or
   archive; the task checks it holds what it needs.
2. Otherwise the canonical download into the cache (`--cache-dir`,
   `$SEQTRAIN_CACHE`), from `--mirror` / `$SEQTRAIN_MIRROR` when given.

A run records these locations absolute (`resolve_locations`), so it can be
evaluated or resumed from any working directory; config.toml keeps what the
user typed beside them, as a comment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from seqtrain.config import SourceData
from seqtrain.errors import SeqtrainError


#: the settings that name a place on this machine; `mirror` may be a URL and is resolved only where it is a local path
LOCATIONS = ("data", "data_dir", "text", "cache_dir", "mirror")


def given_sources(data: SourceData) -> list[tuple[str, str]]:
    """(flag, value) of each local copy named: --data, --data-dir, --text."""
    named = [("--data", data.data), ("--data-dir", data.data_dir), ("--text", getattr(data, "text", None))]
    return [(flag, value) for flag, value in named if value]


def resolve_locations(data: Any) -> dict[str, str]:
    """Make the locations in `data` (a task's data settings) absolute where they are local paths, in place;
    returns setting -> what was typed, for those that changed. A cache folder need not exist yet."""
    typed = {}
    for name in LOCATIONS:
        value = getattr(data, name, None)
        if not isinstance(value, str) or "://" in value:
            continue
        path = Path(value).expanduser()
        if path.exists() or name == "cache_dir":
            absolute = str(path.resolve())
            if absolute != value:
                setattr(data, name, absolute)
                typed[name] = value
    return typed


def local_source(data: SourceData) -> Path | None:
    """The local copy the user named, checked to exist, or None to download."""
    given = given_sources(data)
    if len(given) > 1:
        raise SeqtrainError(f"{' and '.join(flag for flag, _ in given)} name the same thing: give one of them")
    if not given:
        return None
    flag, value = given[0]
    path = Path(value).expanduser()
    if not path.exists():
        raise SeqtrainError(f"{flag} {path} does not exist")
    return path
