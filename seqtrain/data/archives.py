"""Unpacking data archives (tar, compressed tar, zip) without trusting them.

`tarfile` and `zipfile` extract what an archive asks for: links, devices,
absolute paths. Even `filter="data"` let a chain of directory symlinks write
outside the target on Python releases before 3.11.13 / 3.12.11 / 3.13.4
(CVE-2025-4517). No data set seqtrain reads needs more than folders and
regular files, so that is all this module writes, and it writes them itself:
every member name is checked before anything is created, links and special
files are refused, and each file is copied from its member stream into a new
file under the destination. An archive that cannot be read to its end
(truncated, corrupt) is refused as a whole, since `tarfile` otherwise stops
quietly at a damaged header and the caller would keep half a data set.
What an archive may write is bounded too (`Budget`: total bytes, expansion
over the archive's own size, and the free disk space), so a compression bomb
is refused in one line long before it fills the disk.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from seqtrain.errors import SeqtrainError, first_line

try:
    from lzma import LZMAError
except ImportError:  # a Python built without lzma cannot open .tar.xz at all
    LZMAError = zlib.error

MAX_PART, MAX_NAME = 255, 4096  # bytes per path component and per name, as on common file systems
CHUNK = 1 << 20
SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip")
# What a damaged archive raises while it is read: gzip/zlib/bz2/lzma stream errors, tar header errors,
# zip CRC and structure errors, and struct/value errors from headers with impossible fields.
READ_ERRORS = (EOFError, OSError, zlib.error, LZMAError, tarfile.TarError, zipfile.BadZipFile, struct.error, ValueError)
Opener = Callable[[], IO[bytes]]


@dataclass(frozen=True)
class Budget:
    """What one archive may write: at most `max_bytes` in all, and past `free_ratio_bytes` at most
    `max_ratio` times the archive's own size (data sets compress 3-10x; a bomb 1,000x and more), always
    leaving `keep_free` bytes of the disk free."""

    max_bytes: int = 32 << 30
    max_ratio: float = 100.0
    free_ratio_bytes: int = 64 << 20
    keep_free: int = 256 << 20


class _Meter:
    """Counts what an extraction writes and refuses the byte that breaks its budget."""

    def __init__(self, archive: Path, dest: Path, budget: Budget):
        self.archive, self.dest, self.budget = archive, dest, budget
        self.size = archive.stat().st_size
        self.written = 0

    def add(self, count: int) -> None:
        self.written += count
        self._check(self.written)

    def before(self, coming: int) -> None:
        """Refuse a member its declared size already puts past the budget or the free disk, before writing it."""
        self._check(self.written + coming)
        free = shutil.disk_usage(self.dest).free
        if coming + self.budget.keep_free > free:
            raise SeqtrainError(
                f"not enough disk space under {self.dest.parent} to extract {self.archive}: a member of {coming:,} "
                f"bytes with {free:,} free; free some space or set --cache-dir elsewhere"
            )

    def _check(self, written: int) -> None:
        budget = self.budget
        if written > budget.max_bytes:
            raise SeqtrainError(
                f"{self.archive} expands past {budget.max_bytes:,} bytes, the most an archive may write; refused "
                "(extract it yourself and pass the folder with --data if it is genuine)"
            )
        if written > budget.free_ratio_bytes and written > budget.max_ratio * self.size:
            raise SeqtrainError(
                f"{self.archive} expands {written / self.size:,.0f}x ({written:,} bytes from {self.size:,}), past the "
                f"{budget.max_ratio:g}x any data set needs: a compression bomb? refused (extract it yourself and pass "
                "the folder with --data if it is genuine)"
            )


def unpack(archive: Path, dest: Path, budget: Budget | None = None) -> None:
    """Write the folders and regular files of `archive` under the empty folder `dest`, within `budget`.

    Raises SeqtrainError (one line) for a refused member, an unreadable
    archive, a broken budget, or a failed write; `dest` may then hold part of
    the archive and is the caller's to remove.
    """
    meter = _Meter(archive, dest, budget or Budget())
    with contextlib.closing(_members(archive)) as members:
        try:
            for name, kind, opener, size in members:
                parts = _safe_parts(archive, name, kind)
                if kind == "folder":
                    dest.joinpath(*parts).mkdir(parents=True, exist_ok=True)
                elif kind == "file":
                    meter.before(size)
                    _write_file(archive, name, opener, dest, parts, meter)
                else:
                    raise SeqtrainError(
                        f"{archive} holds a {kind} ({_shown(name)}); data archives may hold only files and folders: refused"
                    )
        except OSError as exc:  # reading errors are SeqtrainErrors by now: this is the disk
            raise SeqtrainError(f"cannot extract {archive} into {dest.parent}: {exc}") from exc


def _members(archive: Path) -> Iterator[tuple[str, str, Opener | None, int]]:
    """(name, kind, opener, declared size) for each member; kind is "file", "folder" or what the refused
    member is."""
    with _reading(archive):
        is_zip = zipfile.is_zipfile(archive)
        is_tar = not is_zip and tarfile.is_tarfile(archive)
    if is_zip:
        yield from _zip_members(archive)
    elif is_tar:
        yield from _tar_members(archive)
    elif archive.name.endswith(SUFFIXES):
        raise _corrupt(archive, "no tar or zip structure found")
    else:
        raise SeqtrainError(f"{archive} is neither a tar nor a zip archive")


def _tar_members(archive: Path) -> Iterator[tuple[str, str, Opener | None, int]]:
    with _reading(archive):
        tar = tarfile.open(archive)
    with tar:
        while True:
            with _reading(archive):
                member = tar.next()
            if member is None:
                break
            yield member.name, _tar_kind(member), functools.partial(tar.extractfile, member), member.size
        with _reading(archive):
            _check_tar_end(archive, tar)


def _tar_kind(member: tarfile.TarInfo) -> str:
    if member.isfile():
        return "file"
    if member.isdir():
        return "folder"
    if member.issym():
        return "symbolic link"
    if member.islnk():
        return "hard link"
    if member.ischr() or member.isblk():
        return "device file"
    if member.isfifo():
        return "fifo"
    return "special member"


def _check_tar_end(archive: Path, tar: tarfile.TarFile) -> None:
    """Only NUL blocks may follow the last member: tarfile ends its listing quietly at a damaged or missing
    header. Reading on to the end also makes gzip, bz2 and xz check their length and checksum."""
    tar.fileobj.seek(tar.offset)
    padding = 0
    for block in iter(lambda: tar.fileobj.read(CHUNK), b""):
        if block.strip(b"\0"):
            raise _corrupt(archive, "a damaged header stops the member list")
        padding += len(block)
    if padding < tarfile.BLOCKSIZE:
        raise _corrupt(archive, "the end-of-archive marker is missing")


def _zip_members(archive: Path) -> Iterator[tuple[str, str, Opener | None, int]]:
    with _reading(archive):
        zf = zipfile.ZipFile(archive)
    with zf:
        for info in zf.infolist():
            yield info.filename, _zip_kind(info), functools.partial(zf.open, info), info.file_size


def _zip_kind(info: zipfile.ZipInfo) -> str:
    mode = info.external_attr >> 16  # Unix mode bits, where the archiver recorded them
    if info.flag_bits & 0x1:
        return "password-protected member"
    if stat.S_ISLNK(mode):
        return "symbolic link"
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
        return "special member"
    return "folder" if info.is_dir() or stat.S_ISDIR(mode) else "file"


def _safe_parts(archive: Path, name: str, kind: str) -> list[str]:
    """The path components of a member name, refusing absolute paths, drive letters, `..` and long names."""

    def refuse(why: str) -> SeqtrainError:
        return SeqtrainError(f"{archive} holds an unsafe member {_shown(name)}: {why}; refused")

    if "\0" in name:
        raise refuse("NUL in its name")
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        raise refuse("absolute path")
    parts = [part for part in re.split(r"[/\\]", name) if part not in ("", ".")]
    if ".." in parts:
        raise refuse("'..' in its path")
    if len(os.fsencode(name)) > MAX_NAME or any(len(os.fsencode(part)) > MAX_PART for part in parts):
        raise refuse(f"name longer than {MAX_NAME} bytes or a component longer than {MAX_PART}")
    if not parts and kind != "folder":
        raise refuse("empty name")
    return parts


def _write_file(archive: Path, name: str, opener: Opener | None, dest: Path, parts: list[str], meter: _Meter) -> None:
    """Copy one member into a file created here and now (never an existing file, never through a link)."""
    folder = dest.joinpath(*parts[:-1])
    folder.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    try:
        descriptor = os.open(folder / parts[-1], flags, 0o666)
    except FileExistsError:
        raise SeqtrainError(f"{archive} holds {_shown(name)} twice: refused") from None
    with open(descriptor, "wb") as out:
        with _reading(archive):
            source = opener()
        with source:
            while True:
                with _reading(archive):
                    block = source.read(CHUNK)
                if not block:
                    break
                meter.add(len(block))
                out.write(block)


@contextlib.contextmanager
def _reading(archive: Path) -> Iterator[None]:
    """Turn whatever a damaged archive raises while being read into one line naming the archive."""
    try:
        yield
    except READ_ERRORS as exc:
        raise _corrupt(archive, first_line(exc)) from exc
    except (NotImplementedError, RuntimeError) as exc:  # e.g. a zip compression method Python lacks
        raise SeqtrainError(f"{archive} cannot be read: {exc}") from exc


def _corrupt(archive: Path, detail: str) -> SeqtrainError:
    return SeqtrainError(f"{archive} is truncated or corrupt ({detail}): re-download it or remove it")


def _shown(name: str) -> str:
    return repr(name if len(name) <= 80 else name[:77] + "...")
