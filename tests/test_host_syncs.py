"""The training step never waits for the device: sums, counters and curves stay there until the trainer reads them.

On CPU nothing waits, so the tests count the calls that would wait on a GPU
(a tensor read back as a Python number or list, or copied to the host) while
`Trainer._train_step` runs.
"""

import json
import math
import re

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from typer.testing import CliRunner

from seqtrain.sums import add_sums, fetch, floats
from seqtrain.tasks.base import REGISTRY
from seqtrain.training.checkpoint import load_checkpoint
from seqtrain.training.runs import latest_run
from seqtrain.training.trainer import Trainer
from seqtrain_cli.main import app

from test_resume import small_text

runner = CliRunner()
SINE = ["fit", "--task", "sine", "--epochs", "1", "--max-steps", "12", "--hidden", "8", "--batch-size", "16", "--threads", "1"]
READS = ("item", "tolist", "__float__", "__int__", "__bool__", "__index__", "cpu", "numpy")


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def reads_in_steps(monkeypatch):
    """Calls of READS made inside `_train_step`, by name, and the steps run."""
    seen = {"steps": 0}
    inside = [False]
    for name in READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, __original=original, __name=name, **kwargs):
            if inside[0]:
                seen[__name] = seen.get(__name, 0) + 1
            return __original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    step = Trainer._train_step

    def watched(self, *args, **kwargs):
        inside[0] = True
        try:
            return step(self, *args, **kwargs)
        finally:
            inside[0] = False
            seen["steps"] += 1

    monkeypatch.setattr(Trainer, "_train_step", watched)
    return seen


def fits(task, tmp_path, imdb_dir, *more):
    if task == "sine":
        return invoke(*SINE, "--logdir", tmp_path, "-q", *more)
    if task == "charlm":
        return invoke("fit", "--task", "charlm", "--text", small_text(tmp_path / "t.txt"), "--epochs", "1", "--max-steps",
                      "12", "--hidden", "16", "--batch-size", "8", "--bptt", "20", "--threads", "1", "--logdir", tmp_path,
                      "-q", *more)
    # --no-pretrain-vectors: the preset's word2vec run would add its own training steps to the count
    return invoke("fit", "--task", "imdb", "--data", imdb_dir, "--epochs", "1", "--max-steps", "12", "--hidden", "8",
                  "--embed-dim", "8", "--batch-size", "16", "--threads", "1", "--no-pretrain-vectors", "--logdir", tmp_path,
                  "-q", *more)


@pytest.mark.parametrize("task", ["sine", "charlm", "imdb"])
def test_a_fused_adam_step_reads_nothing_back_from_the_device(task, tmp_path, imdb_dir, reads_in_steps):
    result = fits(task, tmp_path, imdb_dir, "--optimizer", "adam", "--lr-schedule", "linear")
    assert result.exit_code == 0, result.output
    steps = reads_in_steps.pop("steps")
    assert steps == 12 and reads_in_steps == {}
    events = EventAccumulator(str(latest_run(tmp_path)))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, 13))  # every step's point, written in batches
    assert all(math.isfinite(e.value) for e in events.Scalars("train/grad_norm"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("task", ["sine", "charlm", "imdb"])
def test_on_cuda_a_fused_adam_step_never_synchronizes(task, tmp_path, imdb_dir, monkeypatch):
    """CUDA's own sync check raises at any synchronizing call inside a step (after the first, which sets things up)."""
    step, steps = Trainer._train_step, []

    def strict(self, *args, **kwargs):
        torch.cuda.set_sync_debug_mode("error" if steps else "default")
        try:
            return step(self, *args, **kwargs)
        finally:
            torch.cuda.set_sync_debug_mode("default")
            steps.append(1)

    monkeypatch.setattr(Trainer, "_train_step", strict)
    result = fits(task, tmp_path, imdb_dir, "--optimizer", "adam", "--device", "cuda")
    assert result.exit_code == 0, result.output
    assert len(steps) == 12


def test_other_optimizers_read_one_flag_per_step(tmp_path, imdb_dir, reads_in_steps):
    result = fits("sine", tmp_path, imdb_dir, "--optimizer", "rmsprop")
    assert result.exit_code == 0, result.output
    assert reads_in_steps.pop("steps") == 12 and reads_in_steps == {"__bool__": 12}


def nan_from(step_index: int, monkeypatch):
    """Make every training loss from the step with ctx.global_step == step_index on non-finite (sine task)."""
    task = REGISTRY["sine"]
    step = task.step

    def poisoned(self, model, batch, state, ctx):
        result = step(self, model, batch, state, ctx)
        if ctx.training and ctx.global_step >= step_index:
            result.loss = result.loss * math.nan
        return result

    monkeypatch.setattr(task, "step", poisoned)


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop"])
@pytest.mark.parametrize("save_every", [0, 3])
def test_a_nan_mid_run_stops_at_the_step_the_limit_was_reached(optimizer, save_every, tmp_path, monkeypatch):
    # steps 6, 7, 8 are bad: the limit of 3 in a row is reached at step 8, read at step 9's save or step 11's refresh
    nan_from(5, monkeypatch)
    result = invoke(*SINE, "--max-steps", "20", "--max-bad-steps", "3", "--optimizer", optimizer, "--lr", "0.01",
                    "--lr-schedule", "linear", "--save-every", save_every, "--logdir", tmp_path)
    assert result.exit_code == 2 and "Traceback" not in result.output
    line = " ".join(result.output.split())
    # a linear decay over 20 steps: the rate after step 8 is 0.01 * 12/20
    assert "training diverged at step 8 (learning rate 0.006)" in line
    assert "3 steps in a row had a non-finite loss or gradient norm" in line
    run = latest_run(tmp_path)
    if save_every:
        assert f"last good checkpoint is {run / 'last.pt'} (step 6)" in line
        saved = load_checkpoint(run / "last.pt")
        assert saved["state"]["global_step"] == 6 and saved["state"]["skipped_steps"] == 1
        assert all(torch.isfinite(value).all() for value in saved["model"].values())
        assert all(math.isfinite(v) for v in saved["state"]["sums"].values())
    else:
        assert "last good checkpoint is none yet" in line and not (run / "last.pt").exists()
    assert not (run / "metrics.json").exists()
    events = EventAccumulator(str(run))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("train/nonfinite_steps")][:3] == [(6, 1.0), (7, 2.0), (8, 3.0)]


def test_skipped_steps_add_nothing_to_the_sums(tmp_path, monkeypatch):
    nan_from(10, monkeypatch)  # steps 11 and 12 are bad (of 12): skipped, the run goes on
    result = invoke(*SINE, "--logdir", tmp_path, "-q")
    assert result.exit_code == 0, result.output
    report = json.loads((latest_run(tmp_path) / "metrics.json").read_text())
    assert report["nonfinite_steps"] == 2 and math.isfinite(report["test"]["mse"])


def test_sums_add_on_the_device_and_read_back_in_one_transfer(monkeypatch):
    into = {"loss": 1.5, "cm:3": 2.0}
    add_sums(into, {"loss": torch.tensor(0.25), "cm": torch.tensor([0, 0, 1, 4])})
    add_sums(into, {"loss": torch.tensor(math.nan), "cm": torch.tensor([9, 9, 9, 9]), "n": 3.0}, keep=torch.tensor(False))
    calls = []
    tolist = torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "tolist", lambda self: calls.append(1) or tolist(self))
    assert floats(into) == {"loss": 1.75, "cm:2": 1.0, "cm:3": 6.0, "n": 0.0}
    assert len(calls) == 1
    assert fetch([1, torch.tensor(2.5), torch.ones(2, 1)]) == [1, 2.5, [1.0, 1.0]]


def test_a_run_bad_from_its_first_step_stops_when_the_limit_is_reached(tmp_path, monkeypatch):
    nan_from(0, monkeypatch)  # every step bad: the limit (default) is reached at its own step
    result = invoke(*SINE, "--max-bad-steps", "2", "--logdir", tmp_path)
    assert result.exit_code == 2
    assert re.search(r"training diverged at step 2 \(learning rate [0-9.e+-]+\)", " ".join(result.output.split()))
