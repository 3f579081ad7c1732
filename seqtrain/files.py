"""Writing a file so that no reader ever sees it half-written, and no two writers trip over each other."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write` on a temporary file beside `path`, then rename it over `path`.

    The temporary name is unique (not a fixed `.name.tmp`), so two processes
    writing the same file at once cannot rename or delete each other's; a
    failed write removes its temporary file.
    """
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
