"""End to end through the CLI on the small IMDB-format corpus."""

import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from typer.testing import CliRunner

from seqtrain.training.runs import latest_run
from seqtrain_cli.main import app

runner = CliRunner()
SMALL = ["--embed-dim", "32", "--hidden", "16", "--batch-size", "32"]


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def trained(imdb_dir, tmp_path_factory):
    logdir = tmp_path_factory.mktemp("runs")
    result = invoke("fit", "--task", "imdb", "--data-dir", imdb_dir, "--logdir", logdir, "--epochs", "8", *SMALL)
    assert result.exit_code == 0, result.output
    return logdir, result


def test_fit_learns_and_writes_a_complete_run(trained):
    logdir, result = trained
    run = latest_run(logdir)
    assert run.name.startswith("imdb-")
    assert {"best.pt", "last.pt", "config.toml", "metrics.json"} <= {p.name for p in run.iterdir()}
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] > 0.85, metrics  # chance is 0.5
    assert metrics["best_val"]["accuracy"] > 0.85
    assert "test" in result.output and "accuracy" in result.output
    assert "train 8/8" in result.output and "val 8/8" in result.output
    assert "test 9/8" not in result.output and "test ━" in result.output  # the test pass is no epoch


def test_event_files_hold_the_expected_tags(trained):
    logdir, _ = trained
    events = EventAccumulator(str(latest_run(logdir)))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss", "train/grad_norm", "epoch/train/loss", "epoch/train/accuracy", "epoch/val/loss",
            "epoch/val/accuracy", "epoch/lr", "hparams/test_accuracy"} <= scalars
    assert len(events.Scalars("train/loss")) > 4
    assert len(events.Scalars("epoch/val/accuracy")) == 8
    assert "config/text_summary" in events.Tags()["tensors"]
    # hparams live in the run's own folder, not a sub-folder
    assert [p for p in latest_run(logdir).iterdir() if p.is_dir()] == []


def test_evaluate_reports_test_accuracy(trained):
    logdir, _ = trained
    result = invoke("evaluate", "--logdir", logdir)
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output


def test_predict_prints_label_and_probability(trained, tmp_path):
    logdir, _ = trained
    result = invoke("predict", "--logdir", logdir, "latest", "The film was wonderful and the plot brilliant.<br />Really worth it!", "The movie was awful and the script boring. Not for me.")
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("pos\t") and lines[1].startswith("neg\t")
    assert float(lines[0].split("\t")[1]) > 0.5
    texts = tmp_path / "texts.txt"
    texts.write_text("The story was superb, the music excellent. Really worth it!\nThe acting was terrible and the ending horrible. Not for me.\n")
    from_file = invoke("predict", "latest", "--logdir", logdir, "--file", texts)
    assert [l.split("\t")[0] for l in from_file.output.strip().splitlines()] == ["pos", "neg"]
    piped = runner.invoke(app, ["predict", "latest", "--logdir", str(logdir), "-"], input="A great film with a fantastic cast. Really worth it!\n")
    assert piped.output.startswith("pos\t")


def test_summary_of_a_run_and_of_a_fresh_model(trained):
    logdir, _ = trained
    result = invoke("summary", "--logdir", logdir)
    assert result.exit_code == 0, result.output
    assert "Total params" in result.output and "GRU" in result.output
    fresh = invoke("summary", "--task", "imdb", "--cell", "gru", "--hidden", "10", "--no-bidirectional", "--max-vocab", "1000")
    assert fresh.exit_code == 0, fresh.output
    # Embedding 1000x100 (the size of IMDB's word2vec vectors) + GRU(100->10) + Linear(10->1)
    expected = 1000 * 100 + 3 * (100 * 10 + 10 * 10 + 2 * 10) + 11
    assert f"Total params: {expected:,}" in fresh.output


def test_tasks_lists_imdb():
    result = invoke("tasks")
    assert result.exit_code == 0 and "imdb" in result.output


@pytest.mark.parametrize(
    "args,message",
    [
        (["fit", "--task", "nope"], "unknown task 'nope'"),
        (["fit", "--cell", "transformer"], "--cell must be one of"),
        (["fit", "--data-dir", "/no/such/dir"], "does not exist"),
        pytest.param(["fit", "--device", "cuda:0"], "CUDA is not available",
                     marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")),
        (["fit", "--epochs", "0"], "--epochs must be at least 1"),
        (["evaluate", "/no/such/run"], "no run or checkpoint"),
        (["predict", "/no/such/run", "text"], "no run or checkpoint"),
        (["fit", "--embeddings", "/no/vectors.txt", "--max-steps", "1"], "embeddings file not found"),
    ],
)
def test_user_mistakes_get_one_line_and_no_traceback(args, message, imdb_dir, tmp_path):
    if args[:1] == ["fit"] and "--data-dir" not in args:
        args = args + ["--data-dir", str(imdb_dir), "--logdir", str(tmp_path)]
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)


def test_pretrained_frozen_embeddings(imdb_dir, tmp_path):
    from conftest import shared_data
    from seqtrain.training.checkpoint import load_checkpoint

    glove = shared_data("glove-subset/glove.6B.50d.head2446.txt")
    result = invoke("fit", "--data-dir", imdb_dir, "--logdir", tmp_path, "--epochs", "1", "--hidden", "8",
                    "--embeddings", glove, "--freeze-embeddings")
    assert result.exit_code == 0, result.output
    assert "pretrained embeddings cover" in result.output
    checkpoint = load_checkpoint(latest_run(tmp_path) / "best.pt")
    assert checkpoint["config"]["model"]["embed_dim"] == 50
    coverage = float(result.output.split("pretrained embeddings cover ")[1].split("%")[0])
    assert 50 < coverage <= 100  # the fixture's words are common English
    from seqtrain.data.vectors import load_vectors

    vectors = load_vectors(glove)
    row = checkpoint["meta"]["vocab"].index("movie")
    torch.testing.assert_close(checkpoint["model"]["embedding.weight"][row], vectors.vectors[vectors.words.index("movie")])
