"""Step checkpoints: a run killed (kill -9) or interrupted (Ctrl-C) mid-epoch resumes to bitwise the same weights."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from seqtrain.tasks.base import REGISTRY
from seqtrain.training.checkpoint import load_checkpoint
from seqtrain.training.runs import latest_run
from seqtrain_cli.main import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def small_text(path: Path) -> Path:
    rng = random.Random(0)
    words = "the king queen castle sword love death night day crown".split()
    path.write_text("\n".join(" ".join(rng.choice(words) for _ in range(8)) for _ in range(300)))
    return path


def fit(*args) -> None:
    result = runner.invoke(app, ["fit", *map(str, args)])
    assert result.exit_code == 0, result.output


def killed_run(args: list, logdir: Path) -> Path:
    """Start `seqtrain fit` in a process of its own and kill -9 it as soon as its first step checkpoint is on disk."""
    process = subprocess.Popen(
        [sys.executable, "-m", "seqtrain", "fit", *map(str, args), "--logdir", str(logdir), "-q"], cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not list(logdir.glob("*/last.pt")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    return latest_run(logdir)


def assert_same_weights(a: Path, b: Path) -> None:
    for name in ("best.pt", "last.pt"):
        first, second = load_checkpoint(a / name), load_checkpoint(b / name)
        assert first["state"]["global_step"] == second["state"]["global_step"]
        for key, value in first["model"].items():
            assert torch.equal(value, second["model"][key]), f"{name}: {key} differs"
    assert json.loads((a / "metrics.json").read_text())["test"] == json.loads((b / "metrics.json").read_text())["test"]


@pytest.mark.parametrize("family", ["charlm", "imdb", "imdb-ema"])
def test_kill_9_mid_epoch_resumes_to_bitwise_the_same_weights(family, tmp_path, imdb_dir):
    if family == "charlm":
        args = ["--task", "charlm", "--text", small_text(tmp_path / "text.txt"), "--epochs", "2", "--batch-size", "8",
                "--bptt", "25", "--hidden", "16", "--embed-dim", "8", "--dropout", "0.2", "--lr-schedule", "linear"]
    else:
        args = ["--task", "imdb", "--data", imdb_dir, "--epochs", "4", "--batch-size", "16", "--hidden", "8",
                "--embed-dim", "8", "--dropout", "0.2", "--lr-schedule", "cosine"]
        if family == "imdb-ema":  # the average, saved mid-epoch, carries on exactly: best.pt holds it
            args += ["--ema", "0.9"]
    args += ["--threads", "1", "--save-every", "3"]
    fit(*args, "--logdir", tmp_path / "straight", "-q")
    run = killed_run(args, tmp_path / "killed")
    state = load_checkpoint(run / "last.pt")["state"]
    assert not (run / "metrics.json").exists() and state["global_step"] % 3 == 0
    fit("--resume", run, "-q")
    assert_same_weights(latest_run(tmp_path / "straight"), run)


def test_ctrl_c_mid_epoch_exits_130_and_resumes_to_bitwise_the_same_weights(tmp_path, imdb_dir, monkeypatch):
    args = ["--task", "imdb", "--data", imdb_dir, "--epochs", "2", "--batch-size", "32", "--hidden", "8",
            "--embed-dim", "8", "--lr-schedule", "linear", "--threads", "1"]
    fit(*args, "--logdir", tmp_path / "straight", "-q")
    task = REGISTRY["imdb"]
    step = task.step

    def interrupt_at_step_5(self, model, batch, state, ctx):
        if ctx.training and ctx.global_step == 4:
            os.kill(os.getpid(), signal.SIGINT)
        return step(self, model, batch, state, ctx)

    monkeypatch.setattr(task, "step", interrupt_at_step_5)
    result = runner.invoke(app, ["fit", *map(str, args), "--logdir", str(tmp_path / "stopped")])
    assert result.exit_code == 130 and "--resume" in result.output
    run = latest_run(tmp_path / "stopped")
    state = load_checkpoint(run / "last.pt")["state"]
    assert (state["epoch"], state["position"], state["global_step"]) == (0, 5, 5)
    monkeypatch.setattr(task, "step", step)
    fit("--resume", run, "-q")
    assert_same_weights(latest_run(tmp_path / "straight"), run)


def test_a_finished_run_killed_before_its_report_is_finished_on_resume(tmp_path, imdb_dir):
    args = ["--task", "imdb", "--data", imdb_dir, "--epochs", "1", "--batch-size", "32", "--hidden", "8",
            "--embed-dim", "8", "--threads", "1", "--logdir", tmp_path]
    fit(*args, "-q")
    run = latest_run(tmp_path)
    report = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").unlink()  # as if killed between the last checkpoint and the report
    fit("--resume", run, "-q")
    assert json.loads((run / "metrics.json").read_text())["test"] == report["test"]
    result = runner.invoke(app, ["fit", "--resume", str(run)])
    assert result.exit_code == 2 and "already finished" in result.output
