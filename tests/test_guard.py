"""The NaN guard and the baseline check: a diverging run stops with one line and never saves non-finite weights."""

import json
import math

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from typer.testing import CliRunner

from seqtrain.tasks.base import REGISTRY
from seqtrain.training.checkpoint import load_checkpoint
from seqtrain.training.runs import latest_run
from seqtrain.training.trainer import worse_than_baselines
from seqtrain_cli.main import app

from test_resume import small_text

runner = CliRunner()
SINE = ["fit", "--task", "sine", "--epochs", "2", "--max-steps", "10", "--hidden", "8", "--batch-size", "16", "--threads", "1"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_a_diverging_run_stops_naming_the_step_lr_and_last_good_checkpoint(tmp_path):
    result = invoke(*SINE, "--optimizer", "sgd", "--lr", "1e6", "--clip", "0", "--save-every", "1", "--logdir", tmp_path)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "training diverged at step" in result.output and "learning rate 1e+06" in result.output
    run = latest_run(tmp_path)
    assert "last good checkpoint is " + str(run / "last.pt") in " ".join(result.output.split())
    saved = load_checkpoint(run / "last.pt")
    assert all(torch.isfinite(value).all() for value in saved["model"].values())
    assert not (run / "best.pt").exists() and not (run / "metrics.json").exists()


def test_a_single_non_finite_step_is_skipped_counted_and_logged(tmp_path, monkeypatch):
    task = REGISTRY["sine"]
    step = task.step

    def nan_at_step_3(self, model, batch, state, ctx):
        result = step(self, model, batch, state, ctx)
        if ctx.training and ctx.global_step == 3:
            result.loss = result.loss * math.nan
        return result

    monkeypatch.setattr(task, "step", nan_at_step_3)
    result = invoke(*SINE, "--logdir", tmp_path, "-q")
    assert result.exit_code == 0, result.output
    run = latest_run(tmp_path)
    report = json.loads((run / "metrics.json").read_text())
    assert report["nonfinite_steps"] == 1 and math.isfinite(report["test"]["mse"])
    assert all(torch.isfinite(value).all() for value in load_checkpoint(run / "best.pt")["model"].values())
    events = EventAccumulator(str(run))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("train/nonfinite_steps")] == [(4, 1.0)]


def test_a_run_worse_than_its_baseline_says_so(tmp_path):
    text = small_text(tmp_path / "text.txt")
    # lr 20 diverges whatever the float rounding (at 5 the rounding of the products decided it)
    result = invoke("fit", "--task", "charlm", "--text", text, "--epochs", "1", "--hidden", "16", "--batch-size", "8",
                    "--bptt", "25", "--lr", "20", "--threads", "1", "--logdir", tmp_path)
    assert result.exit_code == 0, result.output
    assert "worse than a baseline" in result.output and "worse than the uniform baseline on test" in result.output
    report = json.loads((latest_run(tmp_path) / "metrics.json").read_text())
    assert report["warnings"] and "uniform" in report["warnings"][0]


def test_the_models_own_per_type_and_per_class_rows_are_not_baselines():
    """A tagger's per-entity-type F1 (LOC 0.90 above the micro 0.86) or a classifier's per-class row is the model's
    own score broken down: only real baselines can make a run 'worse than a baseline'."""
    rows = {"test": {"most-frequent-tag": {"f1": 0.54}, "type LOC": {"f1": 0.90}, "type MISC": {"f1": 0.77}}}
    assert worse_than_baselines(REGISTRY["conll2003"], {"f1": 0.91}, {"f1": 0.86}, rows) == []
    rows["test"]["most-frequent-tag"]["f1"] = 0.88
    assert worse_than_baselines(REGISTRY["conll2003"], {"f1": 0.91}, {"f1": 0.86}, rows) == [
        "the model is worse than the most-frequent-tag baseline on test: f1 0.86 vs 0.88"]
    classes = {"test": {"majority": {"accuracy": 0.5}, "class pos": {"accuracy": 0.99}}}
    assert worse_than_baselines(REGISTRY["imdb"], {"accuracy": 0.9}, {"accuracy": 0.9}, classes) == []


def test_precision_bf16_trains_on_cpu_and_16_is_refused_there_in_one_line(tmp_path):
    result = invoke(*SINE, "--precision", "16", "--device", "cpu", "--logdir", tmp_path)
    assert result.exit_code == 2 and "--precision 16 needs a GPU" in result.output and "Traceback" not in result.output
    result = invoke(*SINE, "--precision", "bf16", "--deterministic", "--device", "cpu", "--logdir", tmp_path, "-q")
    assert result.exit_code == 0, result.output
    config = (latest_run(tmp_path) / "config.toml").read_text()
    assert 'precision = "bf16"' in config and "deterministic = true" in config
    assert math.isfinite(json.loads((latest_run(tmp_path) / "metrics.json").read_text())["test"]["mse"])


def test_classifiers_report_the_majority_baseline(tmp_path, imdb_dir):
    result = invoke("fit", "--task", "imdb", "--data", imdb_dir, "--epochs", "1", "--max-steps", "2", "--hidden", "8",
                    "--embed-dim", "8", "--threads", "1", "--logdir", tmp_path, "-q")
    assert result.exit_code == 0, result.output
    extra = json.loads((latest_run(tmp_path) / "metrics.json").read_text())["extra"]
    assert extra["test"]["majority"]["accuracy"] == 0.5  # the test reviews are half positive
    assert 0.3 < extra["val"]["majority"]["accuracy"] < 0.7
