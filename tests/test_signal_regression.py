"""Regressing a number from each numeric sequence: the .ts regression format, scores, ridge, the task end to end."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from typer.testing import CliRunner

from seqtrain.data.signals import read_ts
from seqtrain.errors import SeqtrainError
from seqtrain.models.ridge import ALPHAS, fit_ridge
from seqtrain.scores import regression_scores, regression_sums
from seqtrain.sums import floats
from seqtrain.training.checkpoint import load_checkpoint
from seqtrain_cli.main import app

from conftest import make

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("pulse_rate", ROOT / "scripts" / "pulse_rate.py")
pulse_rate = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pulse_rate)

TSER = """@problemName Toy
@univariate false
@dimensions 2
@equalLength false
@targetLabel true
@data
1,2,3:4,5,6:0.5
1,?,3,4:4,5,6,7:-12.25
"""


def test_ts_reader_reads_numeric_targets(tmp_path):
    path = tmp_path / "Toy_TRAIN.ts"
    path.write_text(TSER)
    found = read_ts(path)
    assert found.numeric and found.labels == ["0.5", "-12.25"]
    assert found.values[1].shape == (4, 2) and found.values[1][1, 0] == 2.0  # the missing value interpolated
    path.write_text(TSER.replace(":0.5", ":high"))
    with pytest.raises(SeqtrainError, match=r"line 7, the target after the last ':': 'high' is not a number"):
        read_ts(path)
    path.write_text(TSER.replace(":0.5", ":?"))
    with pytest.raises(SeqtrainError, match="line 7: the target after the last ':' is missing"):
        read_ts(path)
    path.write_text(TSER.replace("@targetLabel true", "@targetLabel false"))
    with pytest.raises(SeqtrainError, match="no '@classLabel true' \\(classes\\) or '@targetLabel true' \\(numbers\\)"):
        read_ts(path)


def test_the_objective_is_known_before_the_data_loads(tmp_path):
    """`seqtrain tune` asks the task which way is better before any data loads."""
    (tmp_path / "Toy_TRAIN.ts").write_text(TSER)
    (tmp_path / "Classes_TRAIN.ts").write_text(TSER.replace("@targetLabel true", "@classLabel true a b"))
    (tmp_path / "long.csv").write_text("id,x,label\na,1,2.5\n")
    assert (make("signal", data=str(tmp_path / "Toy_TRAIN.ts")).monitor_mode, make("signal").monitor_mode) == ("min", "max")
    assert make("signal", data=str(tmp_path / "Classes_TRAIN.ts")).monitor == "accuracy"
    assert make("signal", data=str(tmp_path / "long.csv")).monitor == "accuracy"
    assert make("signal", data=str(tmp_path / "long.csv"), objective="regress").monitor == "rmse"


def test_regression_scores_add_up_over_batches_and_match_numpy():
    rng = np.random.default_rng(0)
    truth, predicted = rng.normal(50, 3, 40), rng.normal(50, 3, 40)
    sums: dict[str, float] = {}
    for part in (slice(0, 13), slice(13, 40)):  # two batches (or two ranks) add up to the whole pass
        for key, value in floats(regression_sums(torch.tensor(predicted[part]), torch.tensor(truth[part]), 49.0, 2.0)).items():
            sums[key] = sums.get(key, 0.0) + value
    scores = regression_scores(sums, 40, 2.0)
    error = predicted - truth
    assert scores["rmse"] == pytest.approx(np.sqrt(np.mean(error**2)))
    assert scores["mae"] == pytest.approx(np.mean(np.abs(error)))
    assert scores["r2"] == pytest.approx(1 - np.sum(error**2) / np.sum((truth - truth.mean()) ** 2))
    assert math.isnan(regression_scores(floats(regression_sums(torch.ones(3), torch.ones(3), 1.0, 1.0)), 3, 1.0)["r2"])


def test_ridge_picks_the_penalty_with_the_least_leave_one_out_error():
    """Against brute force: every penalty refitted n times, each time without one row."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(15, 6))
    y = x @ rng.normal(size=6) + rng.normal(0, 0.5, 15) + 3

    def ridge(xs: np.ndarray, ys: np.ndarray, alpha: float):
        x_mean, y_mean = xs.mean(0), ys.mean()
        centred = xs - x_mean
        w = np.linalg.solve(centred.T @ centred + alpha * np.eye(xs.shape[1]), centred.T @ (ys - y_mean))
        return lambda rows: (rows - x_mean) @ w + y_mean

    def loo(alpha: float) -> float:
        rows = np.arange(len(y))
        return float(np.mean([(ridge(x[rows != i], y[rows != i], alpha)(x[i]) - y[i]) ** 2 for i in rows]))

    best = min(ALPHAS.tolist(), key=loo)
    predict, said = fit_ridge(torch.from_numpy(x), torch.from_numpy(y))
    assert f"ridge penalty {best:g}" in said
    np.testing.assert_allclose(predict(torch.from_numpy(x)).numpy(), ridge(x, y, best)(x), rtol=1e-9)


def test_a_numeric_label_column_stays_classes_unless_asked(tmp_path):
    rng = np.random.default_rng(2)
    lines = ["id,t,x,label,score"]
    for i in range(60):
        score = rng.uniform(0, 10)
        lines += [f"s{i},{t},{rng.normal():.3f},{i % 3},{score:.3f}" for t in range(5)]
    (tmp_path / "long.csv").write_text("\n".join(lines) + "\n")
    data = str(tmp_path / "long.csv")
    task = make("signal", data=data, features="x")
    task.prepare()
    assert not task.meta.regress and task.meta.labels == ["0", "1", "2"] and "--objective regress" not in task.report[0]
    hinted = make("signal", data=data, features="x", label_col="score")
    hinted.prepare()
    assert "60 distinct numbers: to predict the number, pass --objective regress" in hinted.report[0]
    task = make("signal", data=data, features="x", label_col="score", objective="regress", val_split=0.2)
    task.prepare()
    assert task.meta.regress and task.metric_names == ("loss", "rmse", "mae", "r2") and task.monitor == "rmse"
    assert task.report[0].startswith("target (a number per sequence): ")
    assert set(task.baselines["test"]) == {"mean", "1nn-euclidean", "1nn-dtw-w0.1", "ridge"}


def test_regressing_words_is_a_one_line_error(tmp_path):
    (tmp_path / "long.csv").write_text("id,x,label\na,1,up\na,2,up\nb,3,down\n")
    result = CliRunner().invoke(app, ["fit", "--task", "signal", "--data", str(tmp_path / "long.csv"), "--objective",
                                      "regress", "--logdir", str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert "sequence 'a' has the label 'up', not a number: regression needs numeric labels" in result.output


def test_signal_regression_learns_the_pulse_rate_and_predicts_numbers(tmp_path):
    data = tmp_path / "pulse"
    pulse_rate.write(data, 150, 50, 10.0, seed=1)
    runner = CliRunner()
    result = runner.invoke(app, [
        "fit", "--task", "signal", "--data", str(data), "--hidden", "16", "--epochs", "12", "--threads", "1",
        "--logdir", str(tmp_path / "runs"), "--seed", "1",
    ])
    assert result.exit_code == 0, result.output
    assert "target (a number per sequence): " in result.output and "ridge penalty" in result.output
    run = next((tmp_path / "runs").glob("signal-*"))
    metrics = json.loads((run / "metrics.json").read_text())
    test, baselines = metrics["test"], metrics["extra"]["test"]
    assert set(baselines) == {"mean", "1nn-euclidean", "1nn-dtw-w0.1", "ridge"}
    assert test["rmse"] < 0.6 * baselines["mean"]["rmse"] and test["rmse"] < baselines["ridge"]["rmse"]
    assert test["r2"] > 0.6 and abs(baselines["mean"]["r2"]) < 0.1
    saved = load_checkpoint(run / "best.pt")
    assert saved["meta"]["regress"] and 80 < saved["meta"]["target_mean"] < 120

    predicted = runner.invoke(app, ["predict", str(run), str(data / "PulseRate_TEST.ts")])
    assert predicted.exit_code == 0, predicted.output
    lines = predicted.output.strip().splitlines()
    assert len(lines) == 50 and lines[0].split("\t")[1] == "PulseRate_TEST.ts:0"
    truth = np.array([float(label) for label in read_ts(data / "PulseRate_TEST.ts").labels])
    guesses = np.array([float(line.split("\t")[0]) for line in lines])
    assert np.sqrt(np.mean((guesses - truth) ** 2)) == pytest.approx(test["rmse"], rel=1e-4)

    evaluated = runner.invoke(app, ["evaluate", str(run)])
    assert evaluated.exit_code == 0, evaluated.output
    assert f"{test['rmse']:.4f}" in evaluated.output and "ridge test" in evaluated.output


def test_two_gloo_processes_regress_as_one(tmp_path):
    """torchrun: the ranks' error sums add up to the one-process figures, and rank 0 reports the same baselines."""
    data = tmp_path / "pulse"
    pulse_rate.write(data, 40, 16, 10.0, seed=3)
    common = ["--task", "signal", "--data", str(data), "--epochs", "1", "--max-steps", "3", "--batch-size", "8",
              "--hidden", "8", "--dropout", "0", "--val-split", "0.2", "--threads", "1", "--device", "cpu", "-q"]
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "seqtrain", "fit"]
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "MASTER_ADDR": "127.0.0.1"}
    done = subprocess.run(launch + common + ["--logdir", str(tmp_path / "ddp")], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    result = CliRunner().invoke(app, ["fit", *common, "--logdir", str(tmp_path / "one")])
    assert result.exit_code == 0, result.output
    ddp, one = (json.loads(next((tmp_path / name).glob("signal-*/metrics.json")).read_text()) for name in ("ddp", "one"))
    for key in ("rmse", "mae", "r2"):
        assert ddp["test"][key] == pytest.approx(one["test"][key], rel=1e-4)
    assert ddp["extra"]["test"] == one["extra"]["test"]
    events = EventAccumulator(str(next((tmp_path / "one").glob("signal-*"))))
    events.Reload()
    assert "baseline/val/ridge/rmse" in events.Tags()["scalars"]
    if importlib.util.find_spec("matplotlib") is not None:
        assert "predictions/val" in events.Tags()["images"]  # predicted against true, each epoch
