"""Writing files so that no reader, crash or second process ever sees half of one.

Every file seqtrain keeps (checkpoints, downloads, cached tensors) is written
to a temporary file in the target's own folder (so the final rename is atomic)
under a unique name (so two processes writing the same target never share a
temporary file), flushed to disk, then renamed over the target. If the write
fails (a full disk, Ctrl-C) the temporary file is removed and the previous
version of the target stays as it was.

`file_lock` serialises work that must happen once per cache entry (a download,
an extraction) between processes that start together.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; callers also cope with losing a race
    fcntl = None


@contextlib.contextmanager
def atomic_write(path: Path) -> Iterator[Path]:
    """Yield a fresh temporary path to write; it replaces `path` only once the block completes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # ours alone, usual mode
    try:
        yield temporary
        promote(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def promote(written: Path, path: Path) -> None:
    """Flush a finished file to disk and rename it to `path` in one step."""
    with open(written, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(written, path)
    _fsync_folder(path.parent)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[bool]:
    """Hold an exclusive lock on `.<name>.lock` (a file beside `path`, left in place) for the block.

    Yields whether the lock is real: False where the system has no `fcntl`.
    """
    if fcntl is None:
        yield False
        return
    lock = path.with_name(f".{path.name}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _fsync_folder(folder: Path) -> None:
    """Make a rename durable; some systems cannot open a folder for that, and then it is skipped."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)

