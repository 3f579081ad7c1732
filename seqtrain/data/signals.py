"""Numeric sequences with a label each, in the formats people keep them in.

- The UCR/UEA `.ts` format (sktime/aeon): header lines (`@problemName`,
  `@univariate`, `@equalLength`, `@classLabel true ...`), then one case a line:
  comma-separated values, channels separated by `:`, the label after the last
  `:`. `NAME_TRAIN.ts` and `NAME_TEST.ts` side by side give the two splits.
  The regression archive (Monash TSER) writes `@targetLabel true` instead:
  the field after the last `:` is then a real number.
- A long CSV: one row per time step, an id column grouping rows into
  sequences, an optional time column ordering them, feature columns and a label
  column (`--id-col`, `--time-col`, `--features`, `--label-col`).
- A folder of class folders (optionally under `train/` and `test/`) holding
  one sequence per file: a `.csv` (rows are steps, columns channels, a header
  row optional) or a `.npy` array of shape [steps] or [steps, channels].

Missing values (`?`, `NaN`, empty) are filled by linear interpolation within
their channel (the nearest value at either end); trailing steps missing in
every channel are padding and dropped, as aeon writes unequal lengths.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seqtrain.errors import SeqtrainError

MISSING = {"?", "nan", "", "na", "n/a", "null", "none"}


@dataclass
class Sequences:
    """Sequences [steps, channels] (float32, lengths vary) with a label and a name each."""

    values: list[np.ndarray] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    numeric: bool = False  # the labels are numbers to predict (a .ts with @targetLabel true), not class names

    def __len__(self) -> int:
        return len(self.values)

    @property
    def channels(self) -> int:
        return self.values[0].shape[1] if self.values else 0

    def add(self, values: np.ndarray, label: str, name: str) -> None:
        self.values.append(values)
        self.labels.append(label)
        self.names.append(name)


def fill_missing(values: np.ndarray) -> np.ndarray:
    """Drop trailing steps missing in every channel, then interpolate the remaining gaps per channel.

    A channel with no value at all becomes zeros (the training mean once normalised).
    """
    present = ~np.isnan(values)
    steps = np.nonzero(present.any(1))[0]
    values = values[: steps[-1] + 1 if len(steps) else 1]
    present = present[: len(values)]
    if present.all():
        return values
    out = values.copy()
    index = np.arange(len(values))
    for channel in range(values.shape[1]):
        known = present[:, channel]
        out[:, channel] = np.interp(index, index[known], values[known, channel]) if known.any() else 0.0
    return out


def _number(text: str, where: str) -> float:
    text = text.strip()
    if text.lower() in MISSING:
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise SeqtrainError(f"{where}: '{text[:40]}' is not a number (missing values are written '?' or NaN)") from None


# ------------------------------------------------------------------------ .ts
def read_ts(path: Path) -> Sequences:
    """A `.ts` file (univariate or multivariate, equal or unequal lengths, missing values) with class labels,
    or with numeric targets (`@targetLabel true`: `numeric` is set and every target is checked to be a number)."""
    out, header, data = Sequences(), {}, False
    try:
        handle = open(path, encoding="utf-8", errors="strict")
    except OSError as exc:
        raise SeqtrainError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        try:
            for number, line in enumerate(handle, start=1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                if not data:
                    if not line.startswith("@"):
                        raise SeqtrainError(f"{path} line {number}: expected a header line (@...) or @data before the values")
                    key, _, value = line[1:].partition(" ")
                    header[key.lower()] = value.strip()
                    if key.lower() == "data":
                        data = True
                        if header.get("timestamps", "false").lower() == "true":
                            raise SeqtrainError(f"{path}: @timeStamps true is not supported; write the values without timestamps")
                        out.numeric = header.get("targetlabel", "false").lower() == "true"
                        if header.get("classlabel", "false").split(" ")[0].lower() != "true" and not out.numeric:
                            raise SeqtrainError(
                                f"{path}: no '@classLabel true' (classes) or '@targetLabel true' (numbers) line before @data"
                            )
                    continue
                parts = line.split(":")
                if len(parts) < 2:
                    raise SeqtrainError(
                        f"{path} line {number}: no ':' before a label; a case is 'v1,v2,...:label' "
                        "(channels separated by ':')"
                    )
                label, channels = parts[-1].strip(), parts[:-1]
                if not label:
                    raise SeqtrainError(f"{path} line {number}: the label after the last ':' is empty")
                where = f"{path} line {number}"
                if out.numeric and not math.isfinite(_number(label, f"{where}, the target after the last ':'")):
                    raise SeqtrainError(f"{where}: the target after the last ':' is missing; every case needs its number")
                rows = [[_number(v, where) for v in channel.split(",")] for channel in channels]
                width = max(len(r) for r in rows)
                array = np.full((width, len(rows)), np.nan, dtype=np.float64)
                for c, r in enumerate(rows):
                    array[: len(r), c] = r
                if out.values and array.shape[1] != out.channels:
                    raise SeqtrainError(f"{where}: {array.shape[1]} channels, earlier cases have {out.channels}")
                out.add(fill_missing(array).astype(np.float32), label, f"{path.stem}:{len(out)}")
        except UnicodeDecodeError:
            raise SeqtrainError(f"{path} is not UTF-8 text; is it a .ts file?") from None
    if not data:
        raise SeqtrainError(f"{path} has no @data line; is it a .ts file?")
    if not out.values:
        raise SeqtrainError(f"{path} holds no cases after @data")
    return out


def is_ts_source(path: Path) -> bool:
    """A `.ts` file, or a folder holding `NAME_TRAIN.ts` (or one level down)."""
    return path.suffix.lower() == ".ts" or (path.is_dir() and (any(path.glob("*_TRAIN.ts")) or any(path.glob("*/*_TRAIN.ts"))))


def declares_targets(path: Path) -> bool:
    """Whether `.ts` data says '@targetLabel true' (numbers to regress), from the training file's header alone;
    False for anything else, or a path that is not there (a trained run's data may have moved)."""
    if not path.exists() or not is_ts_source(path):
        return False
    with open(ts_pair(path)[0], encoding="utf-8", errors="replace") as handle:
        for line in handle:
            key, _, value = line.strip().partition(" ")
            if key.lower() == "@data":
                return False
            if key.lower() == "@targetlabel":
                return value.strip().lower() == "true"
    return False


def ts_pair(path: Path) -> tuple[Path, Path | None]:
    """(train, test) files for a `.ts` path or a folder holding `NAME_TRAIN.ts` (and `NAME_TEST.ts`)."""
    if path.is_dir():
        found = sorted(path.glob("*_TRAIN.ts")) or sorted(path.glob("*/*_TRAIN.ts"))
        if not found:
            raise SeqtrainError(f"{path} holds no NAME_TRAIN.ts file")
        path = found[0]
    name = path.name
    for train_tag, test_tag in (("_TRAIN", "_TEST"), ("_train", "_test")):
        if train_tag in name:
            test = path.with_name(name.replace(train_tag, test_tag))
            return path, test if test.is_file() else None
        if test_tag in name:
            train = path.with_name(name.replace(test_tag, train_tag))
            if not train.is_file():
                raise SeqtrainError(f"{path} is a test file and {train.name} is not beside it")
            return train, path
    return path, None


# ------------------------------------------------------------------ long CSV
def read_long_csv(
    path: Path, id_col: str, label_col: str, time_col: str | None = None, features: str | None = None,
    labelled: bool = True,
) -> Sequences:
    """Sequences from one row per step: rows grouped by `id_col` (in order of first appearance), ordered by `time_col`.

    `labelled=False` (prediction) lets the label column be absent; the labels are then empty.
    """
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as handle:
        reader = csv.reader(handle, skipinitialspace=True)
        header = [name.strip() for name in next(reader, [])]
        rows = [(number, row) for number, row in enumerate(reader, start=2) if row]
    if not header:
        raise SeqtrainError(f"{path} is empty; expected a header row of column names")
    position = {name: i for i, name in enumerate(header)}
    if not labelled and label_col not in position:
        label_col = None
    for name, flag in ((id_col, "--id-col"), (label_col, "--label-col"), (time_col, "--time-col")):
        if name is not None and name not in position:
            raise SeqtrainError(f"{flag}: no column '{name}' in {path}; its columns are {', '.join(header)}")
    used = {id_col, label_col, time_col}
    wanted = [n for n in header if n not in used] if features in (None, "all") else [n.strip() for n in features.split(",")]
    for name in wanted:
        if name not in position:
            raise SeqtrainError(f"--features: no column '{name}' in {path}; its columns are {', '.join(header)}")
    if not wanted:
        raise SeqtrainError(f"{path} has no feature columns besides --id-col, --label-col and --time-col")
    groups: dict[str, list[tuple[int, list[str]]]] = {}
    for number, row in rows:
        if len(row) != len(header):
            raise SeqtrainError(f"{path} line {number} has {len(row)} fields, the header has {len(header)}")
        groups.setdefault(row[position[id_col]].strip(), []).append((number, row))
    out = Sequences()
    for key, members in groups.items():
        labels = {row[position[label_col]].strip() if label_col else "" for _, row in members}
        if len(labels) != 1:
            raise SeqtrainError(f"{path}: sequence '{key}' has several labels ({', '.join(sorted(labels)[:4])}); one per sequence")
        if time_col is not None:
            members = sorted(members, key=lambda item: _sort_key(item[1][position[time_col]]))
        array = np.array(
            [[_number(row[position[n]], f"{path} line {number}, column '{n}'") for n in wanted] for number, row in members]
        )
        out.add(fill_missing(array).astype(np.float32), labels.pop(), key)
    if not out.values:
        raise SeqtrainError(f"{path} holds no rows under its header")
    return out


def _sort_key(text: str) -> tuple[int, float | str]:
    """Numbers in numeric order, anything else (ISO timestamps) as text."""
    try:
        return (0, float(text))
    except ValueError:
        return (1, text.strip())


# -------------------------------------------------------------------- folder
def read_sequence_file(path: Path) -> np.ndarray:
    """One sequence [steps, channels] from a `.npy` array or a CSV of rows = steps (header row optional)."""
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise SeqtrainError(f"cannot read {path}: {exc}") from None
        if array.ndim not in (1, 2) or not np.issubdtype(array.dtype, np.number) or not len(array):
            raise SeqtrainError(f"{path}: expected a non-empty numeric array of shape [steps] or [steps, channels], got {array.shape} {array.dtype}")
        array = array.astype(np.float64).reshape(len(array), -1)
    else:
        with open(path, newline="", encoding="utf-8-sig", errors="replace") as handle:
            rows = [(n, row) for n, row in enumerate(csv.reader(handle), start=1) if row]
        if rows and not _numeric_row(rows[0][1]):
            rows = rows[1:]  # a header
        if not rows:
            raise SeqtrainError(f"{path} holds no rows of numbers")
        array = np.array([[_number(v, f"{path} line {n}") for v in row] for n, row in rows])
    return fill_missing(array).astype(np.float32)


def _numeric_row(row: list[str]) -> bool:
    try:
        [_number(v, "") for v in row]
    except SeqtrainError:
        return False
    return True


def read_class_folders(root: Path, suffixes: tuple[str, ...] = (".csv", ".npy")) -> Sequences:
    """`root/<label>/<file>` for every file with one of `suffixes`: the folder name is the label."""
    out = Sequences()
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for file in sorted(folder.iterdir()):
            if file.suffix.lower() in suffixes:
                out.add(read_sequence_file(file), folder.name, f"{folder.name}/{file.name}")
    if not out.values:
        raise SeqtrainError(f"{root} holds no class folders of {' or '.join(suffixes)} files")
    widths = {v.shape[1] for v in out.values}
    if len(widths) > 1:
        raise SeqtrainError(f"{root}: the files have different channel counts ({', '.join(map(str, sorted(widths)))})")
    return out


# -------------------------------------------------------------------- dispatch
def read_signals(
    path: Path, id_col: str = "id", label_col: str = "label", time_col: str | None = None, features: str | None = None
) -> tuple[Sequences, Sequences | None]:
    """(train, test or None) from a `.ts` file or pair, a long CSV, or a folder of class folders (train/ and test/ give the splits)."""
    if is_ts_source(path):
        train, test = ts_pair(path)
        return read_ts(train), read_ts(test) if test else None
    if path.is_file() and path.suffix.lower() in (".csv", ".tsv", ".txt"):
        return read_long_csv(path, id_col, label_col, time_col, features), None
    if path.is_dir():
        if (path / "train").is_dir():
            return read_class_folders(path / "train"), read_class_folders(path / "test") if (path / "test").is_dir() else None
        return read_class_folders(path), None
    raise SeqtrainError(
        f"{path}: cannot tell its format; give a .ts file (or NAME_TRAIN.ts/NAME_TEST.ts folder), a long CSV, "
        "or a folder of class folders of .csv/.npy files"
    )
