"""--pretrain-vectors: word2vec over a preset's own unlabelled text, trained once, cached, and the
classifier's first embedding rows."""

import pytest
import torch

import seqtrain
from seqtrain.data.vectors import run_vectors
from seqtrain.errors import SeqtrainError
from seqtrain.tasks.pretrain import WORD_BUDGET, word2vec_epochs
from seqtrain.training.checkpoint import load_checkpoint

from conftest import make, write_imdb


def test_word2vec_reads_about_the_word_budget():
    assert word2vec_epochs(20_300_000) == 1  # IMDB's 75,000 training and unlabelled reviews
    assert word2vec_epochs(2_390_000) == 5  # Reuters outside ModApte's test split
    assert word2vec_epochs(WORD_BUDGET) == 1
    assert word2vec_epochs(300) == 5  # a tiny corpus: at most 5 epochs


def test_imdb_pretrains_once_and_a_cached_run_trains_alike(tmp_path):
    root = write_imdb(tmp_path / "d", train_per_class=40, test_per_class=10)
    unsup = root / "aclImdb" / "train" / "unsup"
    unsup.mkdir()
    (unsup / "0_0.txt").write_text("zzzunlabelled words only here " * 5)
    cache = tmp_path / "cache"
    settings = dict(data=str(root), cache_dir=str(cache), epochs=1, hidden=8, embed_dim=12, freeze_embeddings=True, seed=3)
    first = seqtrain.fit("imdb", logdir=str(tmp_path / "a"), **settings)
    [vectors] = list((cache / "pretrained").iterdir())  # one finished word2vec run, no leftovers
    assert vectors.name.startswith("imdb-") and (vectors / "best.pt").is_file()
    second = seqtrain.fit("imdb", logdir=str(tmp_path / "b"), **settings)
    assert list((cache / "pretrained").iterdir()) == [vectors]
    assert first.test == second.test and first.best_val == second.best_val  # the same start, cached or not

    trained = run_vectors(vectors)
    assert "zzzunlabelled" in trained.words  # the unlabelled reviews are read; the test ones never
    assert trained.vectors.shape[1] == 12
    checkpoint = load_checkpoint(first.run_dir / "best.pt")
    vocab = checkpoint["meta"]["vocab"]
    embedding = checkpoint["model"]["embedding.weight"]
    row = trained.words.index("movie")
    assert torch.equal(embedding[vocab.index("movie")], trained.vectors[row])  # frozen: still word2vec's row


def test_no_pretrain_vectors_starts_from_random_rows(tmp_path):
    root = write_imdb(tmp_path / "d", train_per_class=20, test_per_class=5)
    cache = tmp_path / "cache"
    seqtrain.fit("imdb", data=str(root), cache_dir=str(cache), logdir=str(tmp_path / "r"), epochs=1, hidden=8,
                 embed_dim=8, pretrain_vectors=False)
    assert not (cache / "pretrained").exists()


def test_a_distributed_first_run_is_refused_in_one_line(tmp_path, monkeypatch):
    root = write_imdb(tmp_path / "d", train_per_class=10, test_per_class=5)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(SeqtrainError, match="run without torchrun first"):
        make("imdb", data=str(root), cache_dir=str(tmp_path / "cache"), hidden=8).prepare()


def test_text_pretrains_on_the_unlabelled_text_it_is_given_once(tmp_path):
    root = write_imdb(tmp_path / "d", train_per_class=30, test_per_class=10)
    unlabelled = tmp_path / "unlabelled.txt"
    unlabelled.write_text("the movie was zzzunlabelled and the plot was great fun\n" * 60)
    cache = tmp_path / "cache"
    settings = dict(data=str(root / "aclImdb"), pretrain_text=str(unlabelled), cache_dir=str(cache), epochs=1, hidden=8,
                    embed_dim=12, freeze_embeddings=True, seed=3)
    first = seqtrain.fit("text", logdir=str(tmp_path / "a"), **settings)
    [vectors] = list((cache / "pretrained").iterdir())
    assert vectors.name.startswith("text-")
    second = seqtrain.fit("text", logdir=str(tmp_path / "b"), **settings)
    assert list((cache / "pretrained").iterdir()) == [vectors] and first.test == second.test  # read from the cache

    trained = run_vectors(vectors)
    assert "zzzunlabelled" in trained.words and trained.vectors.shape[1] == 12
    checkpoint = load_checkpoint(first.run_dir / "best.pt")
    vocab, embedding = checkpoint["meta"]["vocab"], checkpoint["model"]["embedding.weight"]
    assert torch.equal(embedding[vocab.index("movie")], trained.vectors[trained.words.index("movie")])


def test_a_missing_pretrain_text_is_named_in_one_line(tmp_path):
    root = write_imdb(tmp_path / "d", train_per_class=10, test_per_class=5)
    with pytest.raises(SeqtrainError, match="--pretrain-text .*nowhere.txt does not exist"):
        make("text", data=str(root / "aclImdb"), pretrain_text=str(tmp_path / "nowhere.txt"), cache_dir=str(tmp_path / "c"),
             hidden=8).prepare()
