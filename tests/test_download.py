import hashlib
import logging
import multiprocessing
import re
import tarfile
from pathlib import Path

import pytest
import torch

import seqtrain.data.download as download_module
import seqtrain.files
from seqtrain.data.download import cached_tensors, download, extract, mirrored_url, source_key
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
    assert [p.name for p in (tmp_path / "cache" / "downloads").iterdir()] == [".corpus.bin.lock"]


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


def small_archive(tmp_path: Path, files: int = 200) -> Path:
    tree = tmp_path / "tree"
    for i in range(files):
        (tree / "data" / str(i % 10)).mkdir(parents=True, exist_ok=True)
        (tree / "data" / str(i % 10) / f"{i}.txt").write_text(f"file {i}\n" * 50)
    archive = tmp_path / "small.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree / "data", arcname="data")
    return archive


def holds_ten_folders(folder: Path) -> str | None:
    count = len(list((folder / "data").iterdir())) if (folder / "data").is_dir() else 0
    return None if count == 10 else f"data/ holds {count} folders, not 10"


def test_an_extraction_that_fails_its_check_is_not_kept(tmp_path):
    with pytest.raises(SeqtrainError, match="does not hold what was expected: nothing useful"):
        extract(small_archive(tmp_path), tmp_path / "cache" / "entry", lambda folder: "nothing useful")
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [".entry.lock"]


def test_a_cache_entry_that_fails_its_check_is_rebuilt(tmp_path, caplog):
    archive, target = small_archive(tmp_path), tmp_path / "cache" / "entry"
    extract(archive, target, holds_ten_folders)
    for path in (target / "data" / "3").iterdir():
        path.unlink()
    (target / "data" / "3").rmdir()  # as a partial extraction of older versions left it
    with caplog.at_level(logging.WARNING):
        assert extract(archive, target, holds_ten_folders) == target
    [message] = [r.getMessage() for r in caplog.records]
    assert re.fullmatch(rf"{re.escape(str(target))} is damaged \(data/3/\d+\.txt is missing\): extracting {re.escape(str(archive))} again", message)
    assert len(list((target / "data" / "3").iterdir())) == 20


def test_staging_folders_of_killed_runs_are_removed(tmp_path):
    leftover = tmp_path / "cache" / ".entry.staging-abc123"
    (leftover / "data").mkdir(parents=True)
    extract(small_archive(tmp_path), tmp_path / "cache" / "entry")
    assert not leftover.exists()


def _extract_in_child(archive: Path, target: Path, barrier, locks: bool, results) -> None:
    if locks:
        barrier.wait(30)
    else:
        # No fcntl (Windows): both processes unpack, then both rename; the later one must adopt the
        # earlier one's extraction rather than fail with 'Directory not empty'.
        seqtrain.files.fcntl = None
        unpack = download_module.unpack

        def unpack_then_wait(archive: Path, dest: Path, *budget) -> None:
            unpack(archive, dest, *budget)
            barrier.wait(30)

        download_module.unpack = unpack_then_wait
    try:
        results.put(("ok", str(extract(archive, target, holds_ten_folders))))
    except BaseException as exc:
        results.put(("failed", repr(exc)))


@pytest.mark.parametrize("locks", [True, False], ids=["with-lock", "without-lock"])
def test_concurrent_first_extractions_both_succeed(tmp_path, locks):
    archive, target = small_archive(tmp_path), tmp_path / "cache" / "entry"
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(2), context.Queue()
    children = [context.Process(target=_extract_in_child, args=(archive, target, barrier, locks, results)) for _ in range(2)]
    for child in children:
        child.start()
    outcomes = [results.get(timeout=60) for _ in children]
    for child in children:
        child.join(30)
    assert outcomes == [("ok", str(target))] * 2
    assert sorted(p.name for p in target.parent.iterdir() if not p.name.endswith(".lock")) == ["entry"]
    assert sum(1 for p in target.rglob("*.txt")) == 200


def test_folder_key_covers_every_file_below_it(tmp_path):
    folder = tmp_path / "corpus"
    (folder / "a" / "b").mkdir(parents=True)
    (folder / "a" / "b" / "one.txt").write_text("one")
    (folder / "two.txt").write_text("two")
    key = source_key(folder, "v1")
    assert source_key(folder, "v1") == key and source_key(folder, "v2") != key
    (folder / "a" / "b" / "three.txt").write_text("three")
    added = source_key(folder, "v1")
    (folder / "a" / "b" / "one.txt").write_text("uno!")
    edited = source_key(folder, "v1")
    (folder / "two.txt").unlink()
    removed = source_key(folder, "v1")
    assert len({key, added, edited, removed}) == 4
    assert source_key([folder, tmp_path / "absent"]) != source_key(folder)


def test_a_damaged_cache_file_is_rebuilt(tmp_path, caplog):
    path = tmp_path / "encoded.pt"
    builds = []

    def build():
        builds.append(1)
        return {"ids": torch.arange(5)}

    cached_tensors(path, build)
    path.write_bytes(path.read_bytes()[:100])  # cut short, as by a full disk or a copy that stopped
    with caplog.at_level(logging.WARNING):
        assert cached_tensors(path, build)["ids"].tolist() == [0, 1, 2, 3, 4]
    assert len(builds) == 2 and len(caplog.records) == 1
    assert caplog.records[0].getMessage().startswith(f"cache file {path} cannot be read (")
    assert caplog.records[0].getMessage().endswith("): rebuilding it")
    assert cached_tensors(path, build)["ids"].tolist() == [0, 1, 2, 3, 4] and len(builds) == 2
