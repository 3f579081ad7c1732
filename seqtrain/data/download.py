"""Cached, verified downloads, extractions and preprocessed tensors.

A download goes to `<cache>/downloads/<name>.part`, resumes from there if it
was interrupted, is checked against its sha256 and only then renamed into
place, so a file under its final name is always complete and verified.
Extraction (see seqtrain.data.archives for what is refused) happens in a
temporary folder beside the target, is checked, and is renamed in one step,
so nothing half-extracted is ever left under the target's name. It records
every file it wrote with its size, and a later run checks the folder against
that record before using it, so a damaged extraction is rebuilt, not trusted. A lock file
beside each download and extraction makes a second process that starts at
the same time wait and then use the first one's result.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

from seqtrain.data.archives import Budget, unpack
from seqtrain.errors import SeqtrainError, first_line
from seqtrain.files import atomic_write, file_lock, promote

CHUNK = 1 << 20
log = logging.getLogger(__name__)


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """The cache folder: the flag, else $SEQTRAIN_CACHE, else ~/.cache/seqtrain."""
    path = override or os.environ.get("SEQTRAIN_CACHE") or Path.home() / ".cache" / "seqtrain"
    path = Path(path).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def source_key(sources: Path | Iterable[Path], *settings: object) -> str:
    """A short key naming the current version of files or folders, plus the settings that shape what is
    built from them, for cache file names. A folder counts with every file below it (name, size, mtime),
    so adding, removing or editing any file gives a new key."""
    digest = hashlib.sha256()
    for path in [sources] if isinstance(sources, Path) else sources:
        digest.update(os.fsencode(f"{path.resolve()}\n"))
        for line in _listing(path):
            digest.update(os.fsencode(line))
    digest.update("|".join(str(x) for x in settings).encode())
    return digest.hexdigest()[:16]


def _listing(path: Path) -> Iterator[str]:
    """One line per file: a file's own size and mtime, or every file below a folder, in a fixed order."""
    if not path.is_dir():
        stat = path.stat() if path.exists() else None
        yield f"{stat.st_size} {stat.st_mtime_ns}\n" if stat else "missing\n"
        return
    seen: set[tuple[int, int]] = set()
    pending = [(path, "")]
    while pending:
        folder, prefix = pending.pop()
        folder_stat = folder.stat()
        if (folder_stat.st_dev, folder_stat.st_ino) in seen:  # a symlink loop
            continue
        seen.add((folder_stat.st_dev, folder_stat.st_ino))
        with os.scandir(folder) as entries:
            ordered = sorted(entries, key=lambda entry: entry.name)
        for entry in ordered:
            name = prefix + entry.name
            try:
                if entry.is_dir():
                    pending.append((Path(entry.path), name + "/"))
                    continue
                stat = entry.stat()
                yield f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n"
            except OSError:  # a dangling link
                yield f"{name}\0unreadable\n"


def cached_tensors(path: Path, build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Load a preprocessed dict of tensors/lists from `path`, or build it and save it atomically.

    A cache file that cannot be loaded (damaged, cut short) is rebuilt, with a warning.
    """
    if path.exists():
        try:
            return torch.load(path, weights_only=True)
        except Exception as exc:  # whatever is wrong with the file, the cure is to rebuild it
            log.warning("cache file %s cannot be read (%s): rebuilding it", path, first_line(exc))
    blob = build()
    with atomic_write(path) as temporary:
        torch.save(blob, temporary)
    return blob


def mirrored_url(url: str, mirror: str | None = None) -> str:
    """Replace the URL's host and folder by a mirror (base URL or local folder), keeping the file name."""
    mirror = mirror or os.environ.get("SEQTRAIN_MIRROR")
    if not mirror:
        return url
    name = Path(urllib.parse.urlparse(url).path).name
    if "://" not in mirror:
        return Path(mirror).expanduser().resolve().joinpath(name).as_uri()
    return mirror.rstrip("/") + "/" + name


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def download(
    url: str,
    sha256: str | None,
    cache: str | os.PathLike | None = None,
    mirror: str | None = None,
    filename: str | None = None,
    quiet: bool = False,
) -> Path:
    """Fetch `url` (or its mirror) into the cache once; return the verified file's path.

    `sha256=None` is for sources that publish no fixed checksum: the caller
    must then check the file's structure itself.
    """
    target = cache_dir(cache) / "downloads" / (filename or Path(urllib.parse.urlparse(url).path).name)
    target.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(target):  # a second process waits, then finds the file in place
        if target.exists() and (sha256 is None or sha256_of(target) == sha256):
            return target
        source = mirrored_url(url, mirror)
        part = target.with_name(target.name + ".part")
        _fetch(source, part, quiet)
        if sha256 is not None:
            actual = sha256_of(part)
            if actual != sha256:
                part.unlink()
                raise SeqtrainError(
                    f"checksum mismatch for {source}: expected sha256 {sha256}, got {actual}; "
                    "the partial file was removed, check the mirror or try again"
                )
        promote(part, target)
    return target


def _fetch(source: str, part: Path, quiet: bool) -> None:
    """Append the rest of `source` to `part`, resuming where an earlier attempt stopped."""
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(source, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as exc:
        if exc.code == 416:  # the partial file is already complete
            return
        raise SeqtrainError(f"download failed: {source}: HTTP {exc.code}; use --mirror or --data-dir offline") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise SeqtrainError(f"download failed: {source}: {exc}; use --mirror or --data-dir offline") from exc
    with response:
        resumed = offset and getattr(response, "status", 200) == 206
        if offset and not resumed:
            if source.startswith("file:"):  # local files ignore Range: skip the bytes we have
                response.read(offset)
            else:
                offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and (resumed or not offset) else None
        if source.startswith("file:"):
            total = Path(urllib.request.url2pathname(urllib.parse.urlparse(source).path)).stat().st_size
        with open(part, "ab" if offset else "wb") as out, _progress(quiet) as progress:
            task = progress.add_task(Path(part.stem).name, total=total, completed=offset)
            for block in iter(lambda: response.read(CHUNK), b""):
                out.write(block)
                progress.advance(task, len(block))


def _progress(quiet: bool) -> Progress:
    return Progress(
        "[bold]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        disable=quiet,
        transient=True,
    )


MANIFEST = ".seqtrain-extracted.json"  # in an extracted folder: each file's path and size, as the archive held them


def extract(
    archive: Path, target: Path, check: Callable[[Path], str | None] | None = None, budget: Budget | None = None
) -> Path:
    """Extract a tar or zip archive into `target` once, within `budget`; return `target`.

    `check` says what is wrong with an extracted folder (None when nothing
    is): it runs before the extraction is renamed into place, and again on
    an existing `target`, which is rebuilt when it fails rather than trusted,
    as it is when its files differ from those the extraction recorded.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(target) as exclusive:
        if target.exists():
            problem = extraction_problem(target) or (check(target) if check else None)
            if problem is None:
                return target
            log.warning("%s is damaged (%s): extracting %s again", target, problem, archive)
            shutil.rmtree(target)
        if exclusive:  # no one else is extracting here: staging folders left by killed runs can go
            for leftover in target.parent.glob(f".{target.name}.staging-*"):
                shutil.rmtree(leftover, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-", dir=target.parent))
        try:
            unpack(archive, staging, budget)
            (staging / MANIFEST).write_text(json.dumps(_files(staging)))
            problem = check(staging) if check else None
            if problem:
                raise SeqtrainError(f"{archive} does not hold what was expected: {problem}")
            _rename_folder(staging, target, check)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _files(folder: Path) -> dict[str, int]:
    """Every regular file below `folder` (the record aside): relative path -> size."""
    found = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            relative = os.path.relpath(path, folder)
            if relative != MANIFEST:
                found[relative] = os.lstat(path).st_size
    return found


def extraction_problem(folder: Path) -> str | None:
    """How `folder` differs from the files its extraction recorded (None when it does not)."""
    try:
        recorded = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return "no record of what was extracted"
    present = _files(folder)
    for name, size in recorded.items():
        if name not in present:
            return f"{name} is missing"
        if present[name] != size:
            return f"{name} holds {present[name]:,} bytes, not {size:,}"
    extra = sorted(set(present) - set(recorded))
    return f"{extra[0]} was not in the archive" if extra else None


def _rename_folder(staging: Path, target: Path, check: Callable[[Path], str | None] | None) -> None:
    """Move a finished extraction into place; without locks, another process may have got there first."""
    try:
        os.replace(staging, target)
    except OSError:
        if not target.is_dir() or (check and check(target)):
            raise
        # Another process finished the same extraction first: use its result.
