"""Time series for forecasting: the synthetic sine series, CSV columns, splits, normalisation and windows.

Windows are never materialised: a split keeps its whole series once and a
batch gathers its windows by index, so stride-1 windows over a long record
cost no memory beyond the record itself.
"""

from __future__ import annotations

import calendar
import csv
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import torch

from seqtrain.errors import SeqtrainError

# Timestamps --time-col reads besides ISO 8601 (2009-01-01, 2009-01-01 00:10:00, 2009-01-01T00:10, with an
# optional offset), each with an example for the error message: monthly series (the airline-passengers file)
# and day-first dates with dots (the Jena climate record).
TIME_FORMATS = {
    "%Y-%m": "1949-01",
    "%d.%m.%Y %H:%M:%S": "01.01.2009 00:10:00",
    "%d.%m.%Y %H:%M": "01.01.2009 00:10",
    "%d.%m.%Y": "01.01.2009",
}


def sine_series(count: int, steps: int, seed: int) -> np.ndarray:
    """[count, steps] float32: two sines with random frequencies and offsets plus noise (Géron, ch. 15)."""
    rng = np.random.default_rng(seed)
    freq1, freq2, offsets1, offsets2 = rng.random((4, count, 1))
    time = np.linspace(0, 1, steps)
    series = 0.5 * np.sin((time - offsets1) * (freq1 * 10 + 10))
    series += 0.2 * np.sin((time - offsets2) * (freq2 * 20 + 20))
    series += 0.1 * (rng.random((count, steps)) - 0.5)
    return series.astype(np.float32)


def window_starts(length: int, window: int, horizon: int, stride: int) -> torch.Tensor:
    """Start of every window of `window` inputs followed by `horizon` targets that fits in `length` steps."""
    return torch.arange(0, max(length - window - horizon + 1, 0), stride)


@dataclass
class Windows:
    """Windows over one or more series of one split.

    `inputs` [S, L, F] are the (normalised) features, `targets` [S, L] the
    (normalised) target; window i reads series `series[i]` from `starts[i]`.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    series: torch.Tensor
    starts: torch.Tensor
    window: int
    horizon: int

    @classmethod
    def over(cls, inputs: torch.Tensor, targets: torch.Tensor, window: int, horizon: int, stride: int) -> Windows:
        """Every window of each series in `inputs` [S, L, F] / `targets` [S, L]."""
        starts = window_starts(inputs.shape[1], window, horizon, stride)
        series = torch.arange(inputs.shape[0]).repeat_interleave(len(starts))
        return cls(inputs, targets, series, starts.repeat(inputs.shape[0]), window, horizon)

    def __len__(self) -> int:
        return len(self.starts)

    def gather(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, window, F] and y [B, window, horizon]: y[b, t] are the `horizon` target values after step t."""
        series, starts = self.series[index].unsqueeze(1), self.starts[index].unsqueeze(1)
        steps = starts + torch.arange(self.window)
        x = self.inputs[series, steps]
        ahead = steps.unsqueeze(-1) + 1 + torch.arange(self.horizon)
        y = self.targets[series.unsqueeze(-1), ahead]
        return x, y


class WindowLoader:
    """Batches (x, y) of a Windows set; shuffled per epoch (`set_epoch`) when training, in order otherwise."""

    def __init__(self, windows: Windows, batch_size: int, shuffle: bool = False, seed: int = 0):
        self.windows, self.batch_size, self.shuffle, self.seed = windows, batch_size, shuffle, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(len(self.windows) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.windows)
        if self.shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 1000003 + self.epoch))
        else:
            order = torch.arange(n)
        for start in range(0, n, self.batch_size):
            yield self.windows.gather(order[start : start + self.batch_size])


def split_points(rows: int, val_split: float, test_split: float) -> tuple[int, int]:
    """Chronological cut: rows [0, a) train, [a, b) validation, [b, rows) test."""
    if not (0 <= val_split < 1 and 0 <= test_split < 1 and val_split + test_split < 1):
        raise SeqtrainError(f"--val-split {val_split} and --test-split {test_split} must be in [0, 1) and sum below 1")
    val_start = round(rows * (1 - val_split - test_split))
    return val_start, round(rows * (1 - test_split))


def fit_normalization(train_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and standard deviation of the training rows only (a constant column gets std 1)."""
    mean = train_rows.mean(axis=0)
    std = train_rows.std(axis=0)
    return mean.astype(np.float32), np.where(std > 0, std, 1.0).astype(np.float32)


def read_columns(path: Path, target: str, features: str | None, time_col: str | None, every: int = 1) -> tuple[list[str], np.ndarray]:
    """The target and feature columns of a CSV file as float32 [rows, 1 + features], target first, in time order.

    `features` is a comma-separated list, 'all' (every other column but the
    time column), or None (the target alone). With `time_col`, rows are
    sorted by its timestamps; then every `every`-th row is kept.
    """
    header, rows = _read_csv(path)
    position = {name: i for i, name in enumerate(header)}
    if features == "all":
        wanted = [name for name in header if name not in (target, time_col)]
    else:
        wanted = [name.strip() for name in (features or "").split(",") if name.strip() and name.strip() != target]
    names = [target] + wanted
    for name, flag in [(target, "--target"), *((n, "--features") for n in wanted), (time_col, "--time-col")]:
        if name is not None and name not in position:
            raise SeqtrainError(f"{flag}: no column '{name}' in {path}; its columns are {', '.join(header)}")
    values = np.empty((len(rows), len(names)), dtype=np.float64)
    for line, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise SeqtrainError(f"{path} line {line} has {len(row)} fields, the header has {len(header)}")
        for column, name in enumerate(names):
            text = row[position[name]].strip()
            try:
                value = float(text)
            except ValueError:
                if text.lower() in ("", "na", "n/a", "null", "none", "nan"):
                    value = math.nan
                else:
                    raise SeqtrainError(
                        f"column '{name}' is not numeric ({path} line {line}: '{text}'); forecast numeric columns only "
                        "(choose them with --target/--features, and name a timestamp column with --time-col)"
                    ) from None
            if not math.isfinite(value):
                raise SeqtrainError(
                    f"column '{name}' has a missing value at {path} line {line}; fill or drop such rows first"
                )
            values[line - 2, column] = value
    if time_col is not None:
        stamps = [_timestamp(row[position[time_col]].strip(), time_col, path, line) for line, row in enumerate(rows, start=2)]
        values = values[np.argsort(np.array(stamps), kind="stable")]
    return names, values[:: max(every, 1)].astype(np.float32)


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    """A CSV file's column names and its non-empty rows."""
    if not path.is_file():
        raise SeqtrainError(f"--data {path} does not exist")
    # utf-8-sig: a spreadsheet's byte-order mark must not become part of the first column's name.
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as handle:
        reader = csv.reader(handle, skipinitialspace=True)
        header = [name.strip() for name in next(reader, [])]
        rows = [row for row in reader if row]
    if not header:
        raise SeqtrainError(f"{path} is empty; expected a header row of column names")
    return header, rows


@dataclass(frozen=True)
class Step:
    """A series' step between rows: whole calendar months (`months` > 0), else a fixed `duration`."""

    months: int
    duration: timedelta
    month_end: bool = False

    def after(self, when: datetime, steps: int) -> datetime:
        """The time `steps` rows after `when`."""
        if self.months:
            return _add_months(when, self.months * steps, self.month_end)
        return when + self.duration * steps

    def unit(self) -> tuple[str, float]:
        """The step as (unit, size in that unit), for a plot's axis: ('hours', 1.0) for hourly rows, ('minutes', 10.0)."""
        if self.months:
            return ("years", self.months / 12) if self.months % 12 == 0 else ("months", float(self.months))
        seconds = self.duration.total_seconds()
        for name, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
            if seconds >= size:
                return name, seconds / size
        return "seconds", seconds


def series_times(path: Path, time_col: str, every: int) -> tuple[list[datetime], str]:
    """A CSV's times in order, every `every`-th (the rows read_columns keeps), and the last one as written."""
    header, rows = _read_csv(path)
    if time_col not in header:
        raise SeqtrainError(f"--time-col: no column '{time_col}' in {path}; its columns are {', '.join(header)}")
    column = header.index(time_col)
    texts = [row[column].strip() for row in rows]
    stamps = [_timestamp(text, time_col, path, line) for line, text in enumerate(texts, start=2)]
    order = np.argsort(np.array(stamps), kind="stable")[:: max(every, 1)]
    times = [_aware(_parse_time(texts[i])) for i in order]
    if len(times) < 2:
        raise SeqtrainError(f"{path} has fewer than two times in '{time_col}': no step to continue the series by")
    return times, texts[order[-1]]


def series_step(times: list[datetime]) -> Step:
    """The most common gap between consecutive times; where they fall on one day of the month at one time of
    day (or on each month's last day) and are at least 28 days apart, a whole number of calendar months
    (monthly, quarterly, yearly data)."""
    pairs = list(zip(times, times[1:]))
    month_ends = all(t.day == calendar.monthrange(t.year, t.month)[1] for t in times)
    same_day = len({t.day for t in times}) == 1 or month_ends
    if same_day and len({t.timetz() for t in times}) == 1 and all((b - a).days >= 28 for a, b in pairs):
        return Step(_most_common([(b.year - a.year) * 12 + b.month - a.month for a, b in pairs]), timedelta(0), month_ends)
    return Step(0, _most_common([b - a for a, b in pairs]))


def next_times(path: Path, time_col: str, every: int, count: int) -> list[str]:
    """The `count` times after the last row of a CSV's time column, at the series' own step, written as the
    file writes its times."""
    times, like = series_times(path, time_col, every)
    step = series_step(times)
    return [_format_like(step.after(times[-1], k), like) for k in range(1, count + 1)]


def _most_common(values: list):
    """The most common of the last 10,000 values (the series' recent step)."""
    return Counter(values[-10_000:]).most_common(1)[0][0]


def _add_months(when: datetime, months: int, month_end: bool) -> datetime:
    """`when` moved by calendar months: to the month's last day for a month-end series, else the same day
    where the month has it."""
    year, month = divmod(when.year * 12 + when.month - 1 + months, 12)
    days = calendar.monthrange(year, month + 1)[1]
    return when.replace(year=year, month=month + 1, day=days if month_end else min(when.day, days))


def _aware(when: datetime) -> datetime:
    """A time without an offset read as UTC, as _timestamp orders it (so gaps across a DST change stay even)."""
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _format_like(when: datetime, text: str) -> str:
    """`when` written the way `text` (one of the series' times) is."""
    for fmt in TIME_FORMATS:
        try:
            datetime.strptime(text, fmt)
        except ValueError:
            continue
        return when.strftime(fmt)
    naive = _parse_time(text).tzinfo is None
    shown = when.replace(tzinfo=None) if naive else when
    if len(text) <= 10:
        return shown.date().isoformat()
    return shown.isoformat(sep="T" if "T" in text else " ")


def _timestamp(text: str, column: str, path: Path, line: int) -> float:
    """Seconds since the epoch, for ordering rows; a time without an offset is read as UTC, whatever this machine's zone."""
    stamp = _parse_time(text)
    if stamp is None:
        raise SeqtrainError(
            f"--time-col '{column}': cannot read '{text}' ({path} line {line}) as a time; accepted: ISO 8601 "
            f"(2009-01-01, 2009-01-01 00:10:00, 2009-01-01T00:10), {', '.join(TIME_FORMATS.values())}; "
            "or leave --time-col out if the rows are already in time order"
        )
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)).timestamp()


def _parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    for fmt in TIME_FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            pass
    return None
