"""Forecasting's target transforms (log, diff, per-window scaling) and rolling-origin splits."""

import itertools
import json

import numpy as np
import pytest
import torch

from seqtrain.config import ForecastModel, SeriesData
from seqtrain.errors import SeqtrainError
from seqtrain.models.forecaster import Forecaster, last_step
from seqtrain.models.target_transform import TRANSFORMS, TargetTransform, parse_transforms, transform_statistics
from seqtrain.tasks.forecasting import _split_series, fit_linear, linear_forecast, naive_forecast
from seqtrain.training.runs import latest_run
from conftest import make
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


@pytest.mark.parametrize("highway", [False, True])
def test_a_residual_model_with_scaling_starts_as_the_naive_forecast(highway):
    settings = ForecastModel(hidden=8, residual=True, highway=highway)
    model = Forecaster(1, 3, 12, settings, 1.0, TargetTransform(["log", "scale"], 100.0, 20.0))
    torch.nn.init.zeros_(model.head.weight)
    torch.nn.init.zeros_(model.head.bias)
    x = torch.randn(4, 12, 1)
    assert torch.allclose(model(x), x[:, -1, :1].expand(-1, 3), atol=1e-5)


def linear_recurrence(series: int = 64, steps: int = 15) -> torch.Tensor:
    """Damped oscillations around a level of 1.5 (y_t = 1.6 y_t-1 - 0.8 y_t-2 + 0.3): [series, steps], positive."""
    torch.manual_seed(0)
    values = torch.zeros(series, steps)
    values[:, :2] = 1.5 + 0.3 * torch.randn(series, 2)
    for t in range(2, steps):
        values[:, t] = 1.6 * values[:, t - 1] - 0.8 * values[:, t - 2] + 0.3
    return values


def long_noisy(rows: int = 3000, seed: int = 5) -> np.ndarray:
    """Hourly values: a daily cycle plus an AR(1) process (phi 0.8) and as much white noise again, where a linear
    map of the window is the best forecast there is (docs/guides/forecasting.md measures it at 3,000 rows)."""
    rng = np.random.default_rng(seed)
    t, shocks, ar = np.arange(rows), rng.standard_normal(rows), np.zeros(rows)
    for i in range(1, rows):
        ar[i] = 0.8 * ar[i - 1] + shocks[i]
    return 10 + 3 * np.sin(2 * np.pi * t / 24) + ar + rng.standard_normal(rows)


def test_on_a_single_series_the_default_model_starts_as_the_linear_row(tmp_path):
    """Per-window scaling, residual and the least-squares highway: before any step, the model's forecast is the
    linear row's on every window, so training can only set out from the baseline it prints."""
    path = tmp_path / "hourly.csv"
    path.write_text("hour,value\n" + "".join(f"{i},{v:.4f}\n" for i, v in enumerate(long_noisy(400))))
    task = make("csv-series", data=str(path), target="value")
    data = task.prepare(quiet=True)
    model = task.build_model(data.meta).eval()
    x, _ = data.windows["val"].gather(torch.arange(len(data.windows["val"])))
    with torch.no_grad():
        forecast = model(x)
    assert torch.allclose(forecast, linear_forecast(fit_linear(data.windows["train"]), x), atol=1e-4)
    assert not torch.allclose(forecast, naive_forecast(x, 1), atol=1e-2)


@pytest.mark.parametrize("every_step", [False, True])
@pytest.mark.parametrize("names", [[], *(c for c in COMBINATIONS if c[:2] != ["log", "diff"])], ids=lambda n: ",".join(n) or "none")
def test_the_highway_starts_as_the_least_squares_forecast_under_any_transform(names, every_step):
    """A series that a linear map of its past forecasts exactly: whatever the transform does to the recurrent
    path's units, the highway (in the task's units) holds that map, and the model starts as it. (Under log
    and diff together, the residual model's start repeats the last growth ratio, which no linear map undoes.)"""
    values = linear_recurrence()
    x, y = values[:, :12, None], values[:, 12:]
    transform = TargetTransform(names, 0.0, 1.0) if names else None
    model = Forecaster(1, 3, 12, ForecastModel(hidden=8, residual=True, highway=True, every_step=every_step), 1.0, transform)
    model.start_highway([(x[:32], y[:32]), (x[32:], y[32:])])  # fitted batch by batch
    with torch.no_grad():
        forecast = model(x)
    assert forecast.shape == ((64, 12, 3) if every_step else (64, 3))
    assert torch.allclose(last_step(forecast), y, atol=1e-4)
    assert float((last_step(forecast) - y).abs().max()) < float((x[:, -1] - y).abs().max()) / 100  # not naive


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
def test_the_default_model_beats_naive_and_linear_on_a_trended_seasonal_series(tmp_path):
    """With defaults (per-window scaling, the highway started at the least-squares fit, the step budget) the model
    beats both baselines on a series whose test values exceed the training range (332 vs linear 380 and naive
    2,073 test MSE, docs/guides/forecasting.md)."""
    path = tmp_path / "monthly.csv"
    path.write_text("month,value\n" + "".join(f"{i},{v:.3f}\n" for i, v in enumerate(trended_seasonal())))
    result = invoke("fit", "--task", "csv-series", "--data", path, "--target", "value", "--threads", "1",
                    "--logdir", tmp_path / "runs", "--quiet")
    assert result.exit_code == 0, result.output
    metrics = json.loads((latest_run(tmp_path / "runs") / "metrics.json").read_text())
    model, rows = metrics["test"]["mse"], metrics["extra"]["test"]
    assert model < rows["naive"]["mse"] / 2 and model < 0.95 * rows["linear"]["mse"], (model, rows)
    assert max(trended_seasonal()[130:]) > max(trended_seasonal()[:101])  # test values above anything in training


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_a_highway_model_forecasts_several_steps_and_exports_with_parity(tmp_path, fmt):
    """The defaults' model (per-window scaling, the highway started by least squares) through `forecast` and
    `export`: the highway and the transform are in the graph, which matches PyTorch."""
    path = tmp_path / "monthly.csv"
    path.write_text("month,value\n" + "".join(f"{i},{v:.3f}\n" for i, v in enumerate(trended_seasonal())))
    result = invoke("fit", "--task", "csv-series", "--data", path, "--target", "value", "--horizon", "3",
                    "--epochs", "1", "--max-steps", "2", "--threads", "1", "--logdir", tmp_path / "runs", "--quiet")
    assert result.exit_code == 0, result.output
    run = latest_run(tmp_path / "runs")
    assert "highway = true" in (run / "config.toml").read_text()
    forecast = invoke("forecast", run, "--data", path)
    assert forecast.exit_code == 0, forecast.output
    assert len([line for line in forecast.output.splitlines() if line.strip()]) >= 3
    exported = invoke("export", run, "--format", fmt, "--out", tmp_path / "export")
    assert exported.exit_code == 0, exported.output
    sidecar = json.loads((tmp_path / "export" / "seqtrain.json").read_text())
    assert sidecar["parity"]["max_abs_diff"] <= 1e-3 and sidecar["horizon"] == 3
