"""Forecasting's target transforms (log, diff, per-window scaling) and rolling-origin splits."""

import itertools
import json

import numpy as np
import pytest
import torch

from seqtrain.config import ForecastModel, SeriesData
from seqtrain.errors import SeqtrainError
from seqtrain.models.forecaster import Forecaster
from seqtrain.models.target_transform import TRANSFORMS, TargetTransform, parse_transforms, transform_statistics
from seqtrain.tasks.forecasting import _split_series
from seqtrain.training.runs import latest_run
from test_text_task import invoke

COMBINATIONS = [list(c) for r in range(1, 4) for c in itertools.combinations(TRANSFORMS, r)]


def trended_seasonal(rows: int = 144, seed: int = 0) -> np.ndarray:
    """A monthly series that grows 1% a month with a seasonal swing that grows with it, and 4% noise:
    its last months lie above anything in the first 70%."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    season = 1 + 0.2 * np.sin(2 * np.pi * t / 12) + 0.08 * np.sin(4 * np.pi * t / 12 + 1)
    return 100 * np.exp(0.01 * t) * season * (1 + 0.04 * rng.standard_normal(rows))


@pytest.mark.parametrize("names", COMBINATIONS, ids=lambda n: ",".join(n))
def test_each_transform_round_trips_exactly(names):
    raw = torch.from_numpy(trended_seasonal(40)).double().reshape(2, 20)
    mean, std = 150.0, 30.0
    shift, spread = transform_statistics(names, raw[0])
    transform = TargetTransform(names, mean, std, shift, spread).double()
    z = (raw - mean) / std
    past, window, horizon = z[:, :16], 16, 4
    encoded, context = transform.encode(past)
    levels = transform.levels(raw)
    future = levels.diff(dim=1)[:, window - 1 :] if "diff" in names else levels[:, window:]
    _, loc, scale = context
    ideal = (future - loc) / scale  # what a perfect model would output, in its own units
    assert torch.allclose(transform.decode(ideal, context), z[:, window:], atol=1e-9)
    if "scale" in names:  # each window centred and scaled by itself
        assert torch.allclose(encoded.mean(1), torch.zeros(2, dtype=torch.float64), atol=1e-9)
    every = ideal.unsqueeze(1).expand(-1, window, -1)  # the every-step shape decodes step by step
    assert transform.decode(every, context).shape == (2, window, horizon)


def test_a_residual_model_with_scaling_starts_as_the_naive_forecast():
    model = Forecaster(1, 3, 12, ForecastModel(hidden=8, residual=True), 1.0, TargetTransform(["log", "scale"], 100.0, 20.0))
    torch.nn.init.zeros_(model.head.weight)
    torch.nn.init.zeros_(model.head.bias)
    x = torch.randn(4, 12, 1)
    assert torch.allclose(model(x), x[:, -1, :1].expand(-1, 3), atol=1e-5)


@pytest.mark.parametrize(
    "text, message",
    [("sqrt", "unknown 'sqrt'"), ("scale,log", "in that order"), ("diff,diff", "at most once")],
)
def test_bad_transform_lists_are_one_line_errors(text, message):
    with pytest.raises(SeqtrainError, match=message):
        parse_transforms(text)
    assert parse_transforms("none") == [] and parse_transforms("log,diff") == ["log", "diff"]


def test_validation_and_test_windows_look_back_into_the_rows_before_them():
    values = np.arange(100, dtype=np.float32)[:, None]
    data = SeriesData(window=10, horizon=2, val_split=0.2, test_split=0.1)
    windows, meta, report = _split_series(values, data, None, ["v"], "test")
    assert [len(windows[s]) for s in ("train", "val", "test")] == [59, 19, 9]
    assert "train 70 rows / 59 windows, val 20 rows / 19 windows, test 10 rows / 9 windows" in report
    for split, first_target in (("val", 70), ("test", 90)):
        x, y = windows[split].gather(torch.tensor([0]))
        raw_y = y[0, -1] * meta.std[0] + meta.mean[0]
        assert raw_y.tolist() == pytest.approx([first_target, first_target + 1])  # the split's first row is forecast
        assert float(x[0, -1, 0] * meta.std[0] + meta.mean[0]) == pytest.approx(first_target - 1)
    with pytest.raises(SeqtrainError, match="--transform log needs a positive target"):
        _split_series(values - 5, SeriesData(window=10, transform="log"), None, ["v"], "test")


@pytest.mark.timeout(600)  # the default budget: 100 epochs of 2 steps, about 40 s of CPU
def test_the_default_model_beats_naive_on_a_trended_seasonal_series(tmp_path):
    """With defaults (per-window scaling, the step budget) the model beats naive 3.8x on this series; the linear
    row still beats it (380 vs 540 test MSE, docs/tuning.md), so only naive is asserted."""
    path = tmp_path / "monthly.csv"
    path.write_text("month,value\n" + "".join(f"{i},{v:.3f}\n" for i, v in enumerate(trended_seasonal())))
    result = invoke("fit", "--task", "csv-series", "--data", path, "--target", "value", "--threads", "1",
                    "--logdir", tmp_path / "runs", "--quiet")
    assert result.exit_code == 0, result.output
    metrics = json.loads((latest_run(tmp_path / "runs") / "metrics.json").read_text())
    model, rows = metrics["test"]["mse"], metrics["extra"]["test"]
    assert model < rows["naive"]["mse"] / 2, (model, rows)
    assert max(trended_seasonal()[130:]) > max(trended_seasonal()[:101])  # test values above anything in training
