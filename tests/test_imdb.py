"""IMDB data: locating the corpus, the train-only vocabulary, splits and the encoding cache."""

import hashlib
import logging
import tarfile

import pytest

import seqtrain.tasks.classification as classification
import seqtrain.tasks.imdb as imdb
from seqtrain.errors import SeqtrainError

from conftest import make, write_imdb


def imdb_task(data_dir, **settings) -> imdb.ImdbTask:
    return make("imdb", data=str(data_dir), **settings)


def test_vocabulary_comes_from_the_training_part_only(tmp_path):
    root = write_imdb(tmp_path / "d", train_per_class=20, test_per_class=5)
    (root / "aclImdb" / "test" / "pos" / "99_9.txt").write_text("zzzonlyintest " * 50)
    # One training review of a unique length, to find it after the split.
    (root / "aclImdb" / "train" / "pos" / "99_9.txt").write_text("zzzmarker " * 77)
    seen_in = set()
    for seed in range(12):
        data = imdb_task(root, val_split=0.25, seed=seed).prepare()
        vocab = data.meta.vocab
        assert vocab[:2] == ["<pad>", "<unk>"] and "zzzonlyintest" not in vocab
        assert (len(data.train.sequences), len(data.val.sequences), len(data.test.sequences)) == (31, 10, 11)
        in_val = any(len(s) == 77 for s in data.val.sequences)
        seen_in.add("val" if in_val else "train")
        # A word seen only in the validation part must be unknown, as a test-only word is.
        assert ("zzzmarker" in vocab) == (not in_val)
        if in_val:
            assert next(s for s in data.val.sequences if len(s) == 77).tolist() == [1] * 77
    assert seen_in == {"train", "val"}


def test_max_vocab_and_max_len(imdb_dir):
    data = imdb_task(imdb_dir, max_vocab=12, max_len=7).prepare()
    assert len(data.meta.vocab) == 12
    assert max(len(s) for s in data.train.sequences) == 7
    assert all(int(s.max()) < 12 for s in data.train.sequences)


def test_second_prepare_skips_tokenization(imdb_dir, monkeypatch):
    imdb_task(imdb_dir).prepare()

    def fail(_text):
        raise AssertionError("tokenized again")

    monkeypatch.setattr(classification, "tokenize", fail)
    data = imdb_task(imdb_dir).prepare()
    assert len(data.train.sequences) > 0


def test_data_dir_may_hold_the_archive(imdb_dir, tmp_path):
    archive_dir = tmp_path / "archive"
    archive_dir.mkdir()
    with tarfile.open(archive_dir / "aclImdb-labeled.tar.gz", "w:gz") as tar:
        tar.add(imdb_dir / "aclImdb", arcname="aclImdb")
    root = imdb.locate(imdb_task(archive_dir).config)
    assert root.name == "aclImdb" and (root / "train" / "pos").is_dir()
    assert imdb.locate(imdb_task(archive_dir).config) == root  # extracted once


def test_an_archive_without_the_full_layout_is_not_cached(tmp_path):
    root = write_imdb(tmp_path / "d", train_per_class=3, test_per_class=2)
    for review in (root / "aclImdb" / "test" / "neg").iterdir():
        review.unlink()
    archive = tmp_path / "aclImdb-partial.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root / "aclImdb", arcname="aclImdb")
    with pytest.raises(SeqtrainError, match="does not hold what was expected: aclImdb/test/neg is missing or empty"):
        imdb.locate(imdb_task(archive).config)
    assert not [p for p in (imdb.cache_dir() / "imdb").iterdir() if not p.name.endswith(".lock")]


def test_deleted_reviews_are_noticed(tmp_path):
    root = write_imdb(tmp_path / "d", train_per_class=20, test_per_class=10)
    data = imdb_task(root, val_split=0).prepare()
    assert (len(data.train.sequences), len(data.test.sequences)) == (40, 20)
    for folder, count in (("train/neg", 7), ("test/pos", 3)):
        for review in sorted((root / "aclImdb" / folder).iterdir())[:count]:
            review.unlink()
    data = imdb_task(root, val_split=0).prepare()
    assert (len(data.train.sequences), len(data.test.sequences)) == (33, 17)


@pytest.fixture
def mirrored_imdb(tmp_path, monkeypatch):
    """The download path, served by a mirror holding a small archive under the published name and checksum."""
    root = write_imdb(tmp_path / "d", train_per_class=4, test_per_class=4)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with tarfile.open(mirror / "aclImdb_v1.tar.gz", "w:gz") as tar:
        tar.add(root / "aclImdb", arcname="aclImdb")
    monkeypatch.setattr(imdb, "SHA256", hashlib.sha256((mirror / "aclImdb_v1.tar.gz").read_bytes()).hexdigest())
    monkeypatch.setattr(imdb, "REVIEWS_PER_PART", 4)
    return make("imdb", mirror=str(mirror)).config


def test_a_cached_extraction_missing_reviews_is_rebuilt(mirrored_imdb, caplog):
    root = imdb.locate(mirrored_imdb, quiet=True)
    next((root / "train" / "pos").iterdir()).unlink()
    with caplog.at_level(logging.WARNING):
        assert imdb.locate(mirrored_imdb, quiet=True) == root
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()  # the extraction's own record names the missing file
    assert "is damaged (aclImdb/train/pos/" in message and ".txt is missing): extracting" in message
    assert len(list((root / "train" / "pos").iterdir())) == 4


def test_download_path_verifies_the_checksum(tmp_path, monkeypatch):
    # A mirror with a file of the canonical name but other bytes must be refused, not extracted.
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "aclImdb_v1.tar.gz").write_bytes(b"not the real archive")
    with pytest.raises(SeqtrainError, match="checksum mismatch"):
        imdb.locate(make("imdb", mirror=str(mirror)).config, quiet=True)


def test_folder_without_reviews_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SeqtrainError, match="neither an aclImdb/ folder nor an archive"):
        imdb.locate(imdb_task(tmp_path / "empty").config)
