"""Data archives are unpacked without trusting them: only files and folders, checked names, whole or not at all."""

import hashlib
import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

import seqtrain.tasks.imdb as imdb
from seqtrain.data.download import extract
from seqtrain.errors import SeqtrainError
from seqtrain_cli.main import app

from conftest import write_imdb


def add_file(tar: tarfile.TarFile, name: str, data: bytes = b"x") -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def add_special(tar: tarfile.TarFile, name: str, kind: bytes, linkname: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    tar.addfile(info)


def make_tar(path: Path, add) -> Path:
    with tarfile.open(path, "w:gz" if path.name.endswith(".gz") else "w") as tar:
        add(tar)
    return path


def crafted_escape(tar: tarfile.TarFile) -> None:
    """The CVE-2025-4517 shape: a chain of directory symlinks that makes the path long enough to defeat
    the link check of `filter="data"`, a final link that climbs out with `../`, and a file written
    through it. Extracted by tarfile on an unpatched Python, `escaped.txt` lands beside the target."""
    component = "d" * 247
    steps = "abcdefghijklmnop"
    step_path = ""
    for step in steps:
        add_special(tar, os.path.join(step_path, component), tarfile.DIRTYPE)
        add_special(tar, os.path.join(step_path, step), tarfile.SYMTYPE, component)
        step_path = os.path.join(step_path, step)
    long_link = os.path.join(*steps, "l" * 254)
    add_special(tar, long_link, tarfile.SYMTYPE, "../" * len(steps))
    add_special(tar, "escape", tarfile.SYMTYPE, long_link + "/../")
    add_file(tar, "escape/escaped.txt", b"written outside\n")


def files_under(folder: Path) -> set[Path]:
    """Every file and link below `folder`, lock files aside (they are meant to stay)."""
    return {p for p in folder.rglob("*") if not p.is_dir() and not p.name.endswith(".lock")}


def assert_refused_cleanly(tmp_path: Path, archive: Path, match: str) -> None:
    before = files_under(tmp_path)
    target = tmp_path / "cache" / "entry"
    with pytest.raises(SeqtrainError, match=match):
        extract(archive, target)
    assert files_under(tmp_path) == before  # nothing written anywhere, no staging folder left
    assert not target.exists() and not list(target.parent.glob(".entry.staging-*"))


def test_files_and_folders_are_extracted(tmp_path):
    def add(tar):
        add_special(tar, "data", tarfile.DIRTYPE)
        add_file(tar, "data/a.txt", b"hello")
        add_file(tar, "./data/sub/b.txt", b"world")

    out = extract(make_tar(tmp_path / "a.tar.gz", add), tmp_path / "out")
    assert (out / "data" / "a.txt").read_text() == "hello" and (out / "data" / "sub" / "b.txt").read_text() == "world"
    assert stat.S_IMODE((out / "data" / "a.txt").stat().st_mode) == 0o666 & ~_umask()


def test_zip_files_and_folders_are_extracted(tmp_path):
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as zf:
        zf.writestr("data/", "")
        zf.writestr("data/a.txt", "hello")
    assert (extract(tmp_path / "a.zip", tmp_path / "out") / "data" / "a.txt").read_text() == "hello"


@pytest.mark.parametrize(
    "kind,linkname,what",
    [
        (tarfile.SYMTYPE, "a.txt", "symbolic link"),
        (tarfile.SYMTYPE, "../../outside", "symbolic link"),
        (tarfile.SYMTYPE, "/etc/passwd", "symbolic link"),
        (tarfile.LNKTYPE, "a.txt", "hard link"),
        (tarfile.CHRTYPE, "", "device file"),
        (tarfile.BLKTYPE, "", "device file"),
        (tarfile.FIFOTYPE, "", "fifo"),
    ],
)
def test_links_and_special_members_are_refused(tmp_path, kind, linkname, what):
    archive = make_tar(tmp_path / "a.tar.gz", lambda t: (add_file(t, "a.txt"), add_special(t, "b", kind, linkname)))
    assert_refused_cleanly(tmp_path, archive, f"holds a {what} \\('b'\\).*refused")


@pytest.mark.parametrize(
    "name,why",
    [
        ("../evil.txt", "'..'"),
        ("data/../../evil.txt", "'..'"),
        ("data\\..\\..\\evil.txt", "'..'"),
        ("/tmp/evil.txt", "absolute"),
        ("\\evil.txt", "absolute"),
        ("C:/evil.txt", "absolute"),
        ("c:evil.txt", "absolute"),
        ("data/" + "n" * 256, "longer than"),
        ("/".join(["n" * 200] * 21), "longer than"),
    ],
)
def test_unsafe_names_are_refused_before_anything_is_written(tmp_path, name, why):
    archive = make_tar(tmp_path / "a.tar", lambda t: (add_file(t, "first.txt"), add_file(t, name)))
    assert_refused_cleanly(tmp_path, archive, f"unsafe member .*{why}")


def test_zip_names_and_symlink_modes_are_refused(tmp_path):
    with zipfile.ZipFile(tmp_path / "parent.zip", "w") as zf:
        zf.writestr("good.txt", "ok")
        zf.writestr("../evil.txt", "bad")
    assert_refused_cleanly(tmp_path, tmp_path / "parent.zip", "unsafe member '../evil.txt'")
    for name, mode, what in (("link", stat.S_IFLNK | 0o777, "symbolic link"), ("pipe", stat.S_IFIFO | 0o644, "special member")):
        info = zipfile.ZipInfo(name)
        info.create_system = 3  # Unix: the mode bits below are what an unzip tool would honour
        info.external_attr = mode << 16
        with zipfile.ZipFile(tmp_path / f"{name}.zip", "w") as zf:
            zf.writestr(info, "/etc/passwd")
        assert_refused_cleanly(tmp_path, tmp_path / f"{name}.zip", f"holds a {what} \\('{name}'\\)")


def test_a_member_given_twice_is_refused(tmp_path):
    archive = make_tar(tmp_path / "a.tar", lambda t: (add_file(t, "a.txt", b"one"), add_file(t, "a.txt", b"two")))
    assert_refused_cleanly(tmp_path, archive, "holds 'a.txt' twice")


def test_crafted_symlink_chain_writes_nothing_outside(tmp_path):
    archive = make_tar(tmp_path / "crafted.tar.gz", crafted_escape)
    assert_refused_cleanly(tmp_path, archive, "holds a symbolic link")
    assert not list(tmp_path.rglob("escaped.txt"))


def run_cli(*args: str):
    result = CliRunner().invoke(app, list(args))
    lines = [line for line in result.output.splitlines() if line.strip()]
    return result, lines


def test_fit_on_a_crafted_archive_exits_2_with_one_line(tmp_path):
    archive = make_tar(tmp_path / "crafted.tar.gz", crafted_escape)
    result, lines = run_cli("fit", "--task", "imdb", "--data", str(archive), "--logdir", str(tmp_path / "runs"))
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and "holds a symbolic link" in lines[0] and "refused" in lines[0]
    assert not list(tmp_path.rglob("escaped.txt")) and not list(Path(os.environ["SEQTRAIN_CACHE"]).rglob("escaped.txt"))


def test_a_crafted_archive_from_a_mirror_is_refused_too(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    archive = make_tar(mirror / "aclImdb_v1.tar.gz", crafted_escape)
    monkeypatch.setattr(imdb, "SHA256", hashlib.sha256(archive.read_bytes()).hexdigest())  # as if it were genuine
    result, lines = run_cli("fit", "--task", "imdb", "--mirror", str(mirror), "--logdir", str(tmp_path / "runs"), "-q")
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and "holds a symbolic link" in lines[0]
    assert not list(tmp_path.rglob("escaped.txt")) and not list(Path(os.environ["SEQTRAIN_CACHE"]).rglob("escaped.txt"))


def test_jena_zip_data_holding_a_crafted_tar_writes_nothing_outside(tmp_path):
    # A tar under a .zip name is unpacked as the tar it is; a real zip holding the tar is unpacked one
    # level only (no code path extracts nested archives), so it holds no .csv.
    disguised = make_tar(tmp_path / "disguised.zip", crafted_escape)
    nested = tmp_path / "nested.zip"
    with zipfile.ZipFile(nested, "w") as zf:
        zf.write(make_tar(tmp_path / "inner.tar", crafted_escape), "jena.tar")
    for archive, message in ((disguised, "holds a symbolic link"), (nested, "holds no .csv file")):
        result, lines = run_cli("fit", "--task", "jena", "--data", str(archive), "--logdir", str(tmp_path / "runs"))
        assert result.exit_code == 2, result.output
        assert len(lines) == 1 and message in lines[0]
    assert not list(tmp_path.rglob("escaped.txt")) and not list(Path(os.environ["SEQTRAIN_CACHE"]).rglob("escaped.txt"))


@pytest.fixture(scope="module")
def imdb_archive(tmp_path_factory) -> bytes:
    """A small aclImdb .tar.gz, large enough that a cut or a flipped byte lands inside the stream."""
    root = write_imdb(tmp_path_factory.mktemp("tree"), train_per_class=40, test_per_class=20)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(root / "aclImdb", arcname="aclImdb")
    return buffer.getvalue()


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def flipped(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes(b ^ 0xFF for b in data[middle : middle + 16]) + data[middle + 16 :]


@pytest.mark.parametrize("damage", [truncated, flipped])
def test_damaged_tar_gz_is_one_line_and_never_cached(tmp_path, imdb_archive, damage):
    archive = tmp_path / "aclImdb-labeled.tar.gz"
    archive.write_bytes(damage(imdb_archive))
    assert_refused_cleanly(tmp_path, archive, f"{archive} is truncated or corrupt \\(.*\\): re-download it or remove it")
    result, lines = run_cli("fit", "--task", "imdb", "--data", str(archive), "--logdir", str(tmp_path / "runs"))
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and "is truncated or corrupt" in lines[0]
    assert not [p for p in (Path(os.environ["SEQTRAIN_CACHE"]) / "imdb").iterdir() if not p.name.endswith(".lock")]


def test_plain_tar_cut_between_members_is_refused(tmp_path):
    # tarfile lists the members before the cut and stops without complaint; the missing end marker tells.
    archive = make_tar(tmp_path / "a.tar", lambda t: (add_file(t, "a.txt", b"a" * 600), add_file(t, "b.txt", b"b")))
    whole = archive.read_bytes()
    archive.write_bytes(whole[: 512 + 1024])  # the first header and its data
    assert_refused_cleanly(tmp_path, archive, "truncated or corrupt \\(the end-of-archive marker is missing\\)")
    archive.write_bytes(whole[:512 + 1024] + b"\x01" * 512 + whole[2048:])  # a damaged second header
    assert_refused_cleanly(tmp_path, archive, "truncated or corrupt \\(a damaged header")


def test_damaged_zip_is_refused(tmp_path):
    with zipfile.ZipFile(tmp_path / "a.zip", "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("a.txt", "hello world " * 100)
    data = (tmp_path / "a.zip").read_bytes()
    offset = data.index(b"hello")
    (tmp_path / "a.zip").write_bytes(data[:offset] + b"J" + data[offset + 1 :])  # the member's CRC no longer holds
    assert_refused_cleanly(tmp_path, tmp_path / "a.zip", "truncated or corrupt \\(Bad CRC-32")
    (tmp_path / "a.zip").write_bytes(data[: len(data) // 2])
    assert_refused_cleanly(tmp_path, tmp_path / "a.zip", "truncated or corrupt")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
