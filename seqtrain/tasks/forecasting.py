"""Time-series forecasting: sine (synthetic), csv-series (a user's CSV) and jena (Chollet's temperature record).

Every run also scores two baselines on the same windows: naive (repeat the
last observed value) and linear (least squares on the flattened window). A
recurrent model that does not beat them has learnt nothing worth having.
Metrics are in the target's own units; the validation and test rows of the
final table score the forecast made at the last input step.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from seqtrain.config import ForecastModel, ForecastTrain, Schema, SeriesData, WindowData
from seqtrain.data.download import cache_dir, download, extract, source_key
from seqtrain.data.sources import local_source
from seqtrain.data.series import (
    Step, Windows, WindowLoader, fit_normalization, next_times, read_columns, series_step, series_times, sine_series,
    split_points,
)
from seqtrain.errors import SeqtrainError
from seqtrain.models.forecaster import Forecaster, last_step
from seqtrain.models.least_squares import least_squares, with_bias
from seqtrain.models.target_transform import TargetTransform, parse_transforms, transform_statistics
from seqtrain.tasks.base import Meta, StepContext, StepResult, Task, TaskData, register
from seqtrain.training.budget import step_budget

LOSSES = {"mse": F.mse_loss, "mae": F.l1_loss, "huber": F.huber_loss}
PLOTTED = 3  # validation windows drawn in TensorBoard each epoch


@dataclass
class ForecastMeta(Meta):
    """Columns, window sizes and the training rows' normalisation: what a forecast from a CSV needs."""

    features: list[str]
    target: str
    window: int
    horizon: int
    mean: torch.Tensor
    std: torch.Tensor
    seed: int | None = None  # sine: the series are generated from it
    transform: str = "none"  # --transform, and the training statistics of the transformed target
    shift: float = 0.0
    spread: float = 1.0


@dataclass
class ForecastData(TaskData):
    """TaskData plus the windows behind each loader, so baselines and plots can reach them."""

    windows: dict[str, Windows | None] | None = None

    @functools.cached_property
    def baselines(self) -> dict[str, dict[str, dict[str, float]]]:
        """{"val": {"naive": {"mse", "mae"}, "linear": ...}, "test": {...}}, in target units."""
        std = float(self.meta.std[0])
        weights = fit_linear(self.windows["train"])
        rows: dict[str, dict[str, dict[str, float]]] = {}
        for split in ("val", "test"):
            windows = self.windows.get(split)
            if windows is None:
                continue
            totals = {"naive": torch.zeros(2, dtype=torch.float64), "linear": torch.zeros(2, dtype=torch.float64)}
            for x, y in chunks(windows):
                truth = y[:, -1]
                for name, predicted in (("naive", naive_forecast(x, truth.shape[1])), ("linear", linear_forecast(weights, x))):
                    diff = (predicted - truth).double() * std
                    totals[name] += torch.stack([diff.pow(2).sum(), diff.abs().sum()])
            values = windows.horizon * len(windows)
            rows[split] = {
                name: {"mse": squared.item() / values, "mae": absolute.item() / values}
                for name, (squared, absolute) in totals.items()
            }
        return rows


def chunks(windows: Windows, size: int = 4096):
    """All windows in order, `size` at a time, so long stride-1 records never sit in memory whole."""
    for start in range(0, len(windows), size):
        yield windows.gather(torch.arange(start, min(start + size, len(windows))))


def naive_forecast(x: torch.Tensor, horizon: int) -> torch.Tensor:
    """The last observed target value (feature 0), repeated `horizon` times: [B, horizon]."""
    return x[:, -1, :1].expand(-1, horizon)


def fit_linear(windows: Windows, chunk: int = 4096) -> torch.Tensor:
    """Least squares from the flattened window (plus a bias) to the next `horizon` values; [window*F + 1, horizon]."""
    return least_squares((x, y[:, -1]) for x, y in chunks(windows, chunk))


def linear_forecast(weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return (with_bias(x) @ weights).float()


class ForecastTask(Task):
    """What the three forecasting tasks share; each one only says how it loads its series (`load`)."""

    schema: ClassVar[Schema] = Schema(ForecastTrain, ForecastModel, SeriesData)
    meta_type = ForecastMeta
    monitor = "mse"
    monitor_mode = "min"
    metric_names = ("loss", "mse", "mae")
    headline = "mse"
    ability = "forecast"
    source: Path | None = None  # the CSV a series was read from (csv-series, jena), for its time axis
    step_found: Step | None = None

    split_report: list[str] = []  # start-of-run lines on the split sizes
    train_windows: Windows | None = None  # set by prepare(): the highway's least-squares start

    def load(self, meta: ForecastMeta | None, quiet: bool) -> tuple[dict[str, Windows | None], ForecastMeta]:
        """The windows of each split (train, val, test) and the meta that rebuilds the model."""
        raise NotImplementedError

    def validate(self) -> None:
        parse_transforms(getattr(self.config.data, "transform", "none"))

    def prepare(self, meta: ForecastMeta | None = None, quiet: bool = False) -> TaskData:
        windows, self.meta = self.load(meta, quiet)
        self.train_windows = windows["train"]
        batch, seed = self.config.train.batch_size, self.config.train.seed
        loaders = {
            split: WindowLoader(w, batch, shuffle=split == "train", seed=seed) if w is not None else None
            for split, w in windows.items()
        }
        budget = step_budget(self.config, len(windows["train"]), windows.get("val") is not None, "windows")
        self.split_report = self.split_report + ([budget] if budget else [])
        return ForecastData(loaders["train"], loaders["val"], loaders["test"], self.meta, windows=windows)

    def build_model(self, meta: ForecastMeta) -> nn.Module:
        names = parse_transforms(meta.transform)
        transform = TargetTransform(names, float(meta.mean[0]), float(meta.std[0]), meta.shift, meta.spread) if names else None
        model = Forecaster(len(meta.features), meta.horizon, meta.window, self.config.model, float(meta.std[0]), transform)
        if model.highway is not None and self.train_windows is not None:  # training: start as the linear forecast
            model.start_highway((x, y[:, -1]) for x, y in chunks(self.train_windows))
        return model

    def default_meta(self) -> ForecastMeta:
        data = self.config.data
        return ForecastMeta(["value"], "value", data.window, data.horizon, torch.zeros(1), torch.ones(1))

    def step(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], state: Any, ctx: StepContext) -> StepResult:
        x, y = batch
        predicted = model(x)
        loss = LOSSES[self.config.train.loss](predicted, y if predicted.dim() == 3 else y[:, -1])
        diff = ((last_step(predicted) - y[:, -1]) * model.target_std).detach()
        count = len(x)
        sums = {
            "loss": loss.detach() * count,
            "mse": diff.pow(2).mean(1).sum(),
            "mae": diff.abs().mean(1).sum(),
        }
        return StepResult(loss, count, sums)

    def forecast(self, model: nn.Module, path: Path, device: torch.device) -> list[float]:
        """The next `horizon` target values, in its own units, after the last `window` rows of a CSV."""
        meta, data = self.meta, self.config.data
        names = list(meta.features)
        time_col, every = getattr(data, "time_col", None), getattr(data, "every", 1)
        _, values = read_columns(Path(path).expanduser(), names[0], ",".join(names[1:]) or None, time_col, every)
        if len(values) < meta.window:
            raise SeqtrainError(f"{path} has {len(values)} rows (after --every {every}); the model reads {meta.window}")
        return self.forecast_windows(model, values[None, -meta.window :], device)[0]

    def forecast_windows(self, model: nn.Module, windows: np.ndarray, device: torch.device) -> list[list[float]]:
        """Per window [window, features] of rows in the columns' own units (a batch [N, window, features]), the next
        `horizon` target values in the target's units."""
        mean, std = self.meta.mean.numpy(), self.meta.std.numpy()
        x = torch.from_numpy(((windows - mean) / std).astype(np.float32)).to(device)
        model.eval()
        with torch.no_grad():
            predicted = last_step(model(x).cpu())
        return (predicted * float(std[0]) + float(mean[0])).tolist()

    def series_step(self) -> Step | None:
        """The series' step between rows (from --time-col), for the plots' time axis; None without one. Read once."""
        time_col = getattr(self.config.data, "time_col", None)
        if time_col is None or self.source is None:
            return None
        if self.step_found is None:
            self.step_found = series_step(series_times(self.source, time_col, self.config.data.every)[0])
        return self.step_found

    def forecast_times(self, path: Path) -> list[str] | None:
        """When each forecast value falls: the times after the CSV's last row, at its own step (--time-col);
        None for a series without a time column."""
        data = self.config.data
        time_col = getattr(data, "time_col", None)
        if time_col is None:
            return None
        return next_times(Path(path).expanduser(), time_col, getattr(data, "every", 1), self.meta.horizon)

    def extra_rows(self, model: nn.Module, data: TaskData) -> dict[str, dict[str, dict[str, float]]]:
        return data.baselines

    def notes(self) -> list[str]:
        return self.split_report + ([] if have_matplotlib() else [NO_MATPLOTLIB])

    def on_epoch_end(self, model: nn.Module, data: ForecastData, log, epoch: int) -> None:
        for split, rows in data.baselines.items():
            for name, values in rows.items():
                log.scalars(f"baseline/{split}/{name}", values, epoch)
        if data.windows.get("val") is not None:
            plot_forecasts(model, data.windows["val"], data.meta, log, epoch, self.series_step())


NO_MATPLOTLIB = "forecast plots are skipped: matplotlib is not installed (pip install 'seqtrain[plot]')"


def have_matplotlib() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def plot_forecasts(model: nn.Module, windows: Windows, meta: ForecastMeta, log, epoch: int, step: Step | None = None) -> None:
    """A TensorBoard figure of a few validation windows: input, truth, forecast and the naive forecast; on a time
    axis (hours, days, months … from the last input) where the series has a time column, else in steps."""
    if not have_matplotlib():
        if epoch == 1:  # each run's TensorBoard says why it has no figures
            log.text("forecast/plot", NO_MATPLOTLIB, epoch)
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    index = torch.linspace(0, len(windows) - 1, min(PLOTTED, len(windows))).long()
    x, y = windows.gather(index)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        predicted = last_step(model(x.to(model.target_std.device)).cpu())
    model.train(was_training)
    mean, std = float(meta.mean[0]), float(meta.std[0])
    unit, size = step.unit() if step is not None else ("time steps", 1.0)
    past = np.arange(-windows.window + 1, 1) * size
    ahead = np.arange(1, windows.horizon + 1) * size
    figure, axes = plt.subplots(len(index), 1, figsize=(8, 2.2 * len(index)), squeeze=False)
    for row, axis in enumerate(axes[:, 0]):
        axis.plot(past, x[row, :, 0] * std + mean, ".-", color="tab:blue", label="input")
        axis.plot(ahead, y[row, -1] * std + mean, "o-", color="tab:green", label="truth")
        axis.plot(ahead, predicted[row] * std + mean, "x-", color="tab:red", label="forecast")
        axis.plot(ahead, np.full(len(ahead), float(x[row, -1, 0]) * std + mean), ":", color="gray", label="naive")
        axis.set_ylabel(meta.target)
    axes[0, 0].legend(loc="upper left", fontsize="small", ncol=4)
    axes[-1, 0].set_xlabel(f"{unit} from the last input")
    figure.tight_layout()
    log.figure("forecast/val", figure, epoch)
    plt.close(figure)


def _split_series(values: np.ndarray, data: SeriesData, meta: ForecastMeta | None, names: list[str], source: str):
    """Chronological splits of a [rows, F] record, normalised with statistics of the training rows only.

    Validation and test windows look back into the rows before their split (rolling origin): every row of a
    split is forecast once its window of history exists, so no split loses its first `window` rows.
    Returns the windows, the meta and a line on the split sizes.
    """
    if meta is not None and list(meta.features) != names:
        raise SeqtrainError(f"{source} gives columns {names}, but the model was trained on {list(meta.features)}")
    window, horizon = (meta.window, meta.horizon) if meta else (data.window, data.horizon)
    rows = len(values)
    val_start, test_start = split_points(rows, data.val_split, data.test_split)
    parts = {"train": (0, val_start), "val": (val_start, test_start), "test": (test_start, rows)}
    wanted = {"train": True, "val": data.val_split > 0, "test": data.test_split > 0}
    for split, (begin, end) in parts.items():
        need = window + horizon if split == "train" else horizon
        if wanted[split] and end - begin < need:
            raise SeqtrainError(
                f"{source} has {rows} rows (after --every {data.every}), leaving {end - begin} for {split}: "
                f"too few for {f'--window {window} + ' if split == 'train' else ''}--horizon {horizon} = {need}; "
                "use a longer file, a smaller --window/--horizon/--every, or other --val-split/--test-split"
            )
    transform = meta.transform if meta else data.transform
    names_of_transform = parse_transforms(transform)
    if "log" in names_of_transform and not (values[:, 0] > 0).all():
        raise SeqtrainError(
            f"--transform log needs a positive target, and '{names[0]}' in {source} goes down to {values[:, 0].min():g}; "
            "drop log (diff or scale work on any values)"
        )
    if meta is None:
        mean, std = fit_normalization(values[:val_start])
        shift, spread = transform_statistics(names_of_transform, torch.from_numpy(values[:val_start, 0]))
        meta = ForecastMeta(
            names, names[0], window, horizon, torch.from_numpy(mean), torch.from_numpy(std),
            transform=transform, shift=shift, spread=spread,
        )
    normalised = torch.from_numpy((values - meta.mean.numpy()) / meta.std.numpy())
    windows: dict[str, Windows | None] = {}
    for split, (begin, end) in parts.items():
        part = normalised[max(begin - window, 0) if split != "train" else begin : end]
        windows[split] = Windows.over(part[None], part[None, :, 0], window, horizon, data.stride) if wanted[split] else None
    sizes = ", ".join(
        f"{split} {end - begin:,} rows / {len(windows[split]):,} windows"
        for split, (begin, end) in parts.items() if windows[split] is not None
    )
    report = f"splits (in time order; val and test windows look back into the rows before them): {sizes}"
    return windows, meta, report


@register("sine")
class SineTask(ForecastTask):
    description = "Synthetic sine series (Géron ch. 15): 10,000 series of 50 steps, forecast the next --horizon values."
    schema = Schema(ForecastTrain, ForecastModel, WindowData)
    SPLITS = (7000, 2000, 1000)
    defaults = {"cell": "gru", "hidden": 32, "layers": 2, "epochs": 20, "batch_size": 32, "lr": 2e-3, "window": 50}

    def load(self, meta: ForecastMeta | None, quiet: bool) -> tuple[dict[str, Windows | None], ForecastMeta]:
        if meta is None:
            meta = self.default_meta()
            meta.seed = self.config.train.seed
        window, horizon = meta.window, meta.horizon
        series = torch.from_numpy(sine_series(sum(self.SPLITS), window + horizon, meta.seed))
        windows, begin = {}, 0
        for split, size in zip(("train", "val", "test"), self.SPLITS):
            part = series[begin : begin + size]
            windows[split] = Windows.over(part.unsqueeze(-1), part, window, horizon, stride=1)
            begin += size
        self.split_report = [f"splits: {', '.join(f'{s} {n:,} series' for s, n in zip(('train', 'val', 'test'), self.SPLITS))}"]
        return windows, meta


@register("csv-series")
class CsvSeriesTask(ForecastTask):
    description = "Forecast a column of your own CSV: --data FILE --target COL [--features COL,...] [--time-col COL]."
    # Each window scaled by itself: a user's series often trends out of its training range (measured in docs/tuning.md)
    defaults = {
        "cell": "gru", "hidden": 32, "residual": True, "highway": True, "epochs": 10, "window": 24, "val_split": 0.2,
        "transform": "scale",
    }

    def validate(self) -> None:
        super().validate()
        if self.config.data.target is None:
            raise SeqtrainError("csv-series needs --data FILE and --target COLUMN (the column to forecast)")

    def load(self, meta: ForecastMeta | None, quiet: bool) -> tuple[dict[str, Windows | None], ForecastMeta]:
        d = self.config.data
        path = local_source(d)
        if path is None:
            raise SeqtrainError("csv-series needs --data FILE and --target COLUMN (the column to forecast)")
        names, values = read_columns(path, d.target, d.features, d.time_col, d.every)
        self.source = path
        windows, meta, report = _split_series(values, d, meta, names, str(path))
        self.split_report = [report]
        return windows, meta


@register("jena")
class JenaTask(ForecastTask):
    description = "Jena climate 2009-2016 (Chollet): forecast the temperature from 14 weather series, hourly."
    URL = "https://s3.amazonaws.com/keras-datasets/jena_climate_2009_2016.csv.zip"
    CSV = "jena_climate_2009_2016.csv"
    defaults = {
        "cell": "gru",
        "hidden": 32,
        "residual": True,
        "highway": True,
        "epochs": 10,
        "batch_size": 128,
        "target": "T (degC)",
        "features": "all",
        "time_col": "Date Time",
        "every": 6,
        "window": 120,
        "horizon": 24,
        "val_split": 0.25,
        "test_split": 0.25,
    }

    def locate(self, quiet: bool) -> Path:
        """The CSV: --data (a .csv, the .zip, or a folder holding either), else downloaded into the cache and extracted."""
        d = self.config.data
        path = local_source(d)
        if path is not None and path.is_dir():
            found = sorted(path.glob("*.csv")) + sorted(path.glob("*.zip"))
            if not found:
                raise SeqtrainError(f"--data {path} holds no .csv or .zip file; expected {self.CSV}")
            path = found[0]
        if path is not None:
            if path.suffix != ".zip":
                return path
            archive, folder = path, cache_dir(d.cache_dir) / "jena" / f"local-{source_key(path)}"
        else:
            # The host publishes no checksum: the file is checked by its header instead (read_columns).
            archive = download(self.URL, None, d.cache_dir, d.mirror, quiet=quiet)
            folder = cache_dir(d.cache_dir) / "jena" / "jena_climate_2009_2016"
        found = sorted(extract(archive, folder).rglob("*.csv"))
        if not found:
            raise SeqtrainError(f"{archive} holds no .csv file; expected {self.CSV}")
        return found[0]

    def load(self, meta: ForecastMeta | None, quiet: bool) -> tuple[dict[str, Windows | None], ForecastMeta]:
        d = self.config.data
        path = self.locate(quiet)
        names, values = read_columns(path, d.target, d.features, d.time_col, d.every)
        self.source = path
        windows, meta, report = _split_series(values, d, meta, names, str(path))
        self.split_report = [report]
        return windows, meta
