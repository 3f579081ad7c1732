"""`seqtrain export`: every family's graphs in ONNX (onnxruntime) and TorchScript (torch.jit.load) equal PyTorch's
outputs on the run's test batches; the sidecar alone serves a caller without seqtrain."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from seqtrain.export.core import load_runner
from seqtrain.inference import load_trained
from seqtrain_cli.main import app
from tiny_runs import TINY, tiny_runs

pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def runs(tmp_path_factory, imdb_dir) -> dict[str, Path]:
    return tiny_runs(tmp_path_factory, imdb_dir)


@pytest.mark.parametrize("family", ["imdb", "charlm", "pairs", "sine"])
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_each_family_exports_with_parity_and_a_sidecar(runs, family, fmt, tmp_path):
    exported_with_parity(runs[family], fmt, tmp_path / "export")


def exported_with_parity(run: Path, fmt: str, out: Path) -> dict:
    """`seqtrain export RUN --format FMT --out OUT` succeeds with parity within 1e-5 and writes every graph its
    sidecar names; the sidecar, for a family's own checks."""
    result = invoke("export", run, "--format", fmt, "--out", out)
    assert result.exit_code == 0, result.output
    assert "parity with PyTorch" in result.output
    sidecar = json.loads((out / "seqtrain.json").read_text())
    assert sidecar["runtime"] == fmt and sidecar["parity"]["max_abs_diff"] <= 1e-5 and sidecar["parity"]["samples"] >= 2
    for graph in sidecar["graphs"].values():
        assert (out / graph["file"]).is_file() and graph["inputs"] and graph["outputs"]
    return sidecar


def test_an_exported_language_model_step_matches_the_models_own_generation_step(runs, tmp_path):
    """Beyond the export's own check: a state carried through several written steps stays equal to PyTorch's."""
    out = tmp_path / "lm"
    assert invoke("export", runs["charlm"], "--out", out).exit_code == 0
    step = load_runner(out / "step.onnx")
    trained = load_trained(runs["charlm"] / "best.pt", "cpu")
    tokens = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6]] * 2)
    state = tuple(np.zeros((2, 2, 16), np.float32) for _ in range(2))
    with torch.no_grad():
        expected, _ = trained.model(tokens)
    for t in range(tokens.shape[1]):
        scores, *state = step((tokens[:, t].numpy(), *state))
        np.testing.assert_allclose(scores, expected[:, t].numpy(), atol=1e-5, rtol=1e-5)


def test_the_no_seqtrain_example_classifies_like_seqtrain_predict(runs, tmp_path):
    out = tmp_path / "onnx"
    assert invoke("export", runs["imdb"], "--out", out).exit_code == 0
    blocker = tmp_path / "blocked" / "seqtrain"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('the example must run without seqtrain')\n")
    texts = ["A wonderful, brilliant film.<br />Loved it", "Awful. Dull and boring, a waste", ""]
    done = subprocess.run(
        [sys.executable, ROOT / "docs" / "examples" / "classify_onnx.py", out, *texts],
        capture_output=True, text=True, env={"PYTHONPATH": str(blocker.parent), "PATH": "/usr/bin:/bin"}, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    trained = load_trained(runs["imdb"] / "best.pt", "cpu")
    expected = trained.task.predict(trained.model, texts, trained.device)
    assert len(done.stdout.splitlines()) == len(texts)
    for line, (prediction,) in zip(done.stdout.splitlines(), expected):
        label, probability, _ = line.split("\t")
        assert label == prediction.label and abs(float(probability) - prediction.probability) < 1e-4


def test_refusals_are_one_line(runs, tmp_path, monkeypatch):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "file").write_text("x")
    taken = invoke("export", runs["sine"], "--out", out)
    assert taken.exit_code == 2 and "--force" in taken.output
    wrong = invoke("export", runs["sine"], "--format", "tflite", "--out", tmp_path / "a")
    assert wrong.exit_code == 2 and "onnx, torchscript" in wrong.output
    monkeypatch.setattr("seqtrain.export.core.TOLERANCE", -1.0)  # nothing can pass: the failure path
    failed = invoke("export", runs["sine"], "--out", tmp_path / "b")
    assert failed.exit_code == 2 and "parity check failed" in failed.output and "Traceback" not in failed.output


def test_loop_cells_are_refused(tmp_path):
    result = invoke("fit", "--task", "sine", "--hidden", "8", "--recurrent-dropout", "0.1", *TINY, "--logdir", tmp_path)
    assert result.exit_code == 0, result.output
    refused = invoke("export", "latest", "--logdir", tmp_path, "--out", tmp_path / "x")
    assert refused.exit_code == 2 and "--recurrent-dropout" in refused.output


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_int8_reports_the_test_metric_before_and_after(runs, fmt, tmp_path):
    out = tmp_path / "int8"
    result = invoke("export", runs["imdb"], "--format", fmt, "--quantize", "int8", "--out", out)
    assert result.exit_code == 0, result.output
    quantized = json.loads((out / "seqtrain.json").read_text())["quantized"]
    assert quantized["metric"] == "accuracy" and 0 <= quantized["int8"] <= 1 and quantized["size_ratio"] > 0
    assert (out / quantized["files"]["classifier"]).is_file() and "test accuracy" in result.output


def test_int8_is_refused_past_the_limit_unless_forced(runs, tmp_path, monkeypatch):
    monkeypatch.setattr("seqtrain.export.quantize.MAX_DROP", {"max": -1.0, "min": -1.0})  # any result is a drop
    refused = invoke("export", runs["sine"], "--quantize", "int8", "--out", tmp_path / "a")
    assert refused.exit_code == 2 and "refused" in refused.output and "--force" in refused.output
    assert not list((tmp_path / "a").glob("*.int8.onnx"))
    forced = invoke("export", runs["sine"], "--quantize", "int8", "--out", tmp_path / "b", "--force")
    assert forced.exit_code == 0 and (tmp_path / "b" / "forecaster.int8.onnx").is_file()
    language_model = invoke("export", runs["charlm"], "--quantize", "int8", "--out", tmp_path / "c")
    assert language_model.exit_code == 2 and "classifiers and forecasters" in language_model.output
