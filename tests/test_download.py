import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from seqtrain.data.download import download, extract, mirrored_url
from seqtrain.errors import SeqtrainError

URL = "https://example.org/data/corpus.bin"


@pytest.fixture
def mirror(tmp_path) -> tuple[Path, bytes]:
    folder = tmp_path / "mirror"
    folder.mkdir()
    payload = bytes(range(256)) * 5000
    (folder / "corpus.bin").write_bytes(payload)
    return folder, payload


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_mirror_keeps_the_file_name():
    assert mirrored_url(URL, "http://local:8000/m/") == "http://local:8000/m/corpus.bin"
    assert mirrored_url(URL, "/srv/m").startswith("file:///") and mirrored_url(URL, "/srv/m").endswith("/srv/m/corpus.bin")


def test_download_from_a_mirror_verifies_and_caches(tmp_path, mirror):
    folder, payload = mirror
    path = download(URL, sha(payload), tmp_path / "cache", str(folder), quiet=True)
    assert path.read_bytes() == payload
    (folder / "corpus.bin").unlink()  # cached: no second fetch
    assert download(URL, sha(payload), tmp_path / "cache", str(folder), quiet=True) == path


def test_file_url_mirror_works(tmp_path, mirror):
    folder, payload = mirror
    path = download(URL, sha(payload), tmp_path / "cache", folder.resolve().as_uri(), quiet=True)
    assert path.read_bytes() == payload


def test_wrong_checksum_is_an_error_and_leaves_nothing(tmp_path, mirror):
    folder, _ = mirror
    with pytest.raises(SeqtrainError, match="checksum mismatch"):
        download(URL, "0" * 64, tmp_path / "cache", str(folder), quiet=True)
    assert list((tmp_path / "cache" / "downloads").iterdir()) == []


def test_interrupted_download_resumes_from_the_partial_file(tmp_path, mirror):
    folder, payload = mirror
    part = tmp_path / "cache" / "downloads" / "corpus.bin.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(payload[:1000])
    path = download(URL, sha(payload), tmp_path / "cache", str(folder), quiet=True)
    assert path.read_bytes() == payload
    assert not part.exists()


def test_unreachable_source_is_a_one_line_error(tmp_path):
    with pytest.raises(SeqtrainError, match="download failed"):
        download(URL, None, tmp_path / "cache", str(tmp_path / "nowhere"), quiet=True)


def _tar(tmp_path: Path, add) -> Path:
    path = tmp_path / "a.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        add(tar)
    return path


def _file(tar: tarfile.TarFile, name: str, data: bytes = b"x") -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _link(tar: tarfile.TarFile, name: str, target: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    tar.addfile(info)


def test_extract_tar(tmp_path):
    archive = _tar(tmp_path, lambda t: (_file(t, "data/a.txt", b"hello"), _link(t, "data/b.txt", "a.txt")))
    out = extract(archive, tmp_path / "out")
    assert (out / "data" / "a.txt").read_text() == "hello"


@pytest.mark.parametrize(
    "add,reason",
    [
        (lambda t: _file(t, "../evil.txt"), "'..'"),
        (lambda t: _file(t, "/etc/evil.txt"), "absolute"),
        (lambda t: (_file(t, "ok.txt"), _link(t, "link", "../../outside")), "outside"),
        (lambda t: _link(t, "abs", "/etc/passwd"), "outside"),
    ],
)
def test_extract_refuses_members_that_escape(tmp_path, add, reason):
    archive = _tar(tmp_path, add)
    with pytest.raises(SeqtrainError, match=reason):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "evil.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["a.tar.gz"]  # no half-extracted staging folder


def test_extract_zip_refuses_parent_paths(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("good.txt", "ok")
        zf.writestr("../evil.txt", "bad")
    with pytest.raises(SeqtrainError, match="'..'"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()
