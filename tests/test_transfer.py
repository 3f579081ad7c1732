"""What a classifier takes from elsewhere: the coverage report of --embeddings, vectors from runs and
binary files, --init-from a word-LM run (vocabulary mapping, shape errors), and --log-embeddings."""

import random

import pytest
import torch
from typer.testing import CliRunner

from conftest import NEGATIVE, NEUTRAL, POSITIVE
from seqtrain.data.vectors import WordVectors, save_vectors
from seqtrain.training.checkpoint import load_checkpoint
from seqtrain.training.runs import latest_run
from seqtrain.transfer import coverage_of
from seqtrain_cli.main import app

runner = CliRunner()
TINY = ["--hidden", "8", "--epochs", "1", "--max-steps", "2", "--batch-size", "16"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_coverage_counts_tokens_and_names_frequent_missing_words():
    vocab = ["<pad>", "<unk>", "the", "movie", "zzz", "qqq"]
    found = torch.tensor([False, False, True, True, False, False])
    coverage = coverage_of(vocab, found, {"the": 50, "movie": 30, "zzz": 5, "qqq": 15})
    assert (coverage.covered, coverage.missing) == (2, 2)
    assert coverage.token_share == pytest.approx(80 / 100)
    assert coverage.top_missing == ["qqq", "zzz"]  # by training frequency
    lines = coverage.lines()
    assert "50.0% of the vocabulary" in lines[0] and "80.0% of the training tokens" in lines[0]
    assert lines[1].endswith("qqq zzz")


def test_embeddings_report_and_binary_file(imdb_dir, tmp_path):
    words = ["the", "movie", "great", "awful", "film"]
    path = tmp_path / "vectors.bin"
    save_vectors(WordVectors(words, torch.randn(len(words), 12)), path, binary=True)
    result = invoke("fit", "--data-dir", imdb_dir, "--logdir", tmp_path / "runs", "--embeddings", path, *TINY)
    assert result.exit_code == 0, result.output
    assert "5 words covered" in result.output and "of the training tokens" in result.output
    assert "most frequent words without a vector:" in result.output
    checkpoint = load_checkpoint(latest_run(tmp_path / "runs") / "best.pt")
    assert checkpoint["config"]["model"]["embed_dim"] == 12


def test_embeddings_from_a_word2vec_run_and_log_embeddings(imdb_dir, tmp_path):
    import shutil

    text = tmp_path / "reviews.txt"
    text.write_text("\n".join(p.read_text() for p in sorted((imdb_dir / "aclImdb" / "train" / "pos").glob("*.txt"))))
    result = invoke("fit", "--task", "word2vec", "--text", text, "--logdir", tmp_path / "w2v", "--epochs", "1",
                    "--embed-dim", "10", "--min-count", "1")
    assert result.exit_code == 0, result.output
    w2v_run = latest_run(tmp_path / "w2v")
    result = invoke("fit", "--data-dir", imdb_dir, "--logdir", tmp_path / "runs", "--embeddings", w2v_run,
                    "--log-embeddings", *TINY)
    assert result.exit_code == 0, result.output
    assert "pretrained embeddings cover" in result.output
    run = latest_run(tmp_path / "runs")
    assert "tensor_path" in (run / "projector_config.pbtxt").read_text()
    metadata = (run / "00001" / "embedding" / "metadata.tsv").read_text().split()
    assert "<pad>" not in metadata and "movie" in metadata
    # a classifier run is a vector source too (its embedding layer)
    result = invoke("similar", run, "movie", "--top-k", "2")
    assert result.exit_code == 0, result.output
    shutil.rmtree(tmp_path / "w2v")


@pytest.fixture(scope="module")
def word_lm(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lm")
    rng = random.Random(0)
    words = POSITIVE + NEGATIVE + NEUTRAL
    (folder / "text.txt").write_text("\n".join(" ".join(rng.choice(words) for _ in range(12)) for _ in range(400)))
    result = invoke("fit", "--task", "wordlm", "--text", folder / "text.txt", "--logdir", folder / "runs", "--cell", "gru",
                    "--embed-dim", "16", "--hidden", "8", "--layers", "2", "--epochs", "1", "--max-steps", "3",
                    "--batch-size", "4", "--bptt", "6")
    assert result.exit_code == 0, result.output
    return latest_run(folder / "runs")


def test_init_from_maps_vocabulary_and_recurrent_weights(word_lm, imdb_dir, tmp_path):
    result = invoke("fit", "--data-dir", imdb_dir, "--logdir", tmp_path, "--init-from", word_lm, "--cell", "gru",
                    "--embed-dim", "16", "--hidden", "8", "--layers", "2", "--no-bidirectional", "--lr", "1e-9",
                    "--epochs", "1", "--max-steps", "1", "--batch-size", "16")
    assert result.exit_code == 0, result.output
    assert "initialised from" in result.output and "2 recurrent layer(s)" in result.output
    lm = load_checkpoint(word_lm / "best.pt")
    classifier = load_checkpoint(latest_run(tmp_path) / "best.pt")
    lm_vocab, vocab = lm["meta"]["vocab"], classifier["meta"]["vocab"]
    for word in ("movie", "great", "awful"):
        torch.testing.assert_close(classifier["model"]["embedding.weight"][vocab.index(word)],
                                   lm["model"]["embedding.weight"][lm_vocab.index(word)], atol=1e-6, rtol=0)
    for layer in (0, 1):
        torch.testing.assert_close(classifier["model"][f"encoder.layers.{layer}.fwd.weight_hh_l0"],
                                   lm["model"][f"rnn.weight_hh_l{layer}"], atol=1e-6, rtol=0)


def test_init_from_refuses_shapes_that_cannot_fit(word_lm, imdb_dir, tmp_path):
    result = invoke("fit", "--data-dir", imdb_dir, "--logdir", tmp_path, "--init-from", word_lm, *TINY)
    assert result.exit_code == 2
    assert "does not fit" in result.output and "--cell gru --hidden 8 --embed-dim 16" in result.output
    result = invoke("fit", "--data-dir", imdb_dir, "--logdir", tmp_path, "--init-from", word_lm, "--cell", "gru",
                    "--embed-dim", "16", "--hidden", "8", "--layers", "2", "--bidirectional", *TINY[2:])
    assert result.exit_code == 2 and "bidirectional only with one layer" in result.output


def test_init_from_refuses_a_run_that_is_no_word_lm(imdb_dir, tmp_path):
    result = invoke("fit", "--data-dir", imdb_dir, "--logdir", tmp_path / "a", *TINY)
    assert result.exit_code == 0, result.output
    result = invoke("fit", "--data-dir", imdb_dir, "--logdir", tmp_path / "b", "--init-from", latest_run(tmp_path / "a"), *TINY)
    assert result.exit_code == 2 and "not a word-level language model" in result.output
