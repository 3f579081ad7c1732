"""IMDB data: locating the corpus, the train-only vocabulary, splits and the encoding cache."""

import tarfile

import pytest

import seqtrain.tasks.imdb as imdb
from seqtrain.config import Config
from seqtrain.errors import SeqtrainError
from seqtrain.tasks import get_task

from conftest import write_imdb


def config_for(data_dir, **data) -> Config:
    config = Config(task="imdb")
    config.update({"data.data_dir": str(data_dir), **{f"data.{k}": v for k, v in data.items()}})
    return config


def test_vocabulary_comes_from_the_training_part_only(tmp_path):
    root = write_imdb(tmp_path / "d", train_per_class=20, test_per_class=5)
    (root / "aclImdb" / "test" / "pos" / "99_9.txt").write_text("zzzonlyintest " * 50)
    # One training review of a unique length, to find it after the split.
    (root / "aclImdb" / "train" / "pos" / "99_9.txt").write_text("zzzmarker " * 77)
    seen_in = set()
    for seed in range(12):
        config = config_for(root, val_split=0.25)
        config.train.seed = seed
        data = get_task("imdb").prepare(config)
        vocab = data.meta["vocab"]
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
    data = get_task("imdb").prepare(config_for(imdb_dir, max_vocab=12, max_len=7))
    assert len(data.meta["vocab"]) == 12
    assert max(len(s) for s in data.train.sequences) == 7
    assert all(int(s.max()) < 12 for s in data.train.sequences)


def test_second_prepare_skips_tokenization(imdb_dir, monkeypatch):
    get_task("imdb").prepare(config_for(imdb_dir))

    def fail(_text):
        raise AssertionError("tokenized again")

    monkeypatch.setattr(imdb, "tokenize", fail)
    data = get_task("imdb").prepare(config_for(imdb_dir))
    assert len(data.train.sequences) > 0


def test_data_dir_may_hold_the_archive(imdb_dir, tmp_path):
    archive_dir = tmp_path / "archive"
    archive_dir.mkdir()
    with tarfile.open(archive_dir / "aclImdb-labeled.tar.gz", "w:gz") as tar:
        tar.add(imdb_dir / "aclImdb", arcname="aclImdb")
    root = imdb.locate(config_for(archive_dir))
    assert root.name == "aclImdb" and (root / "train" / "pos").is_dir()
    assert imdb.locate(config_for(archive_dir)) == root  # extracted once


def test_download_path_verifies_the_checksum(tmp_path, monkeypatch):
    # A mirror with a file of the canonical name but other bytes must be refused, not extracted.
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "aclImdb_v1.tar.gz").write_bytes(b"not the real archive")
    config = Config(task="imdb")
    config.update({"data.mirror": str(mirror)})
    with pytest.raises(SeqtrainError, match="checksum mismatch"):
        imdb.locate(config, quiet=True)


def test_folder_without_reviews_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SeqtrainError, match="neither an aclImdb/ folder nor an archive"):
        imdb.locate(config_for(tmp_path / "empty"))
