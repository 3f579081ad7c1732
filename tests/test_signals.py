"""Numeric-sequence readers, the 1-NN baselines, and the `signal` task end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from seqtrain.data.signals import fill_missing, read_class_folders, read_long_csv, read_signals, read_ts
from seqtrain.errors import SeqtrainError
from seqtrain.models.nearest import dtw_distances, one_nn_baselines, resample
from seqtrain_cli.main import app

from conftest import shared_data

MULTIVARIATE = """# a comment
@problemName Toy
@timeStamps false
@missing true
@univariate false
@dimensions 2
@equalLength false
@classLabel true walking up stairs,sitting
@data
1,2,3,4:10,20,30,40:walking up stairs
1,?,3:5,6,NaN:sitting
0.5,0.25:1,1: sitting
"""


def test_ts_reader_multivariate_unequal_missing_and_labels_with_spaces(tmp_path):
    path = tmp_path / "Toy_TRAIN.ts"
    path.write_text(MULTIVARIATE)
    found = read_ts(path)
    assert found.labels == ["walking up stairs", "sitting", "sitting"]
    assert [v.shape for v in found.values] == [(4, 2), (3, 2), (2, 2)]
    assert found.values[1][:, 0].tolist() == [1, 2, 3]  # '?' interpolated
    assert found.values[1][:, 1].tolist() == [5, 6, 6]  # NaN at the end of one channel: its nearest value


def test_fill_missing_drops_trailing_padding():
    values = np.array([[1.0], [np.nan], [3.0], [np.nan], [np.nan]])
    assert fill_missing(values)[:, 0].tolist() == [1, 2, 3]


@pytest.mark.parametrize(
    "line, message",
    [("1,2,3", "line 12: no ':' before a label"), ("1,x,3:a", "line 12: 'x' is not a number"), ("1,2:", "label after the last ':' is empty")],
)
def test_ts_reader_names_file_and_line_of_a_malformed_case(tmp_path, line, message):
    path = tmp_path / "Bad_TRAIN.ts"
    path.write_text(MULTIVARIATE.replace("0.5,0.25:1,1: sitting", line))
    with pytest.raises(SeqtrainError, match=message) as caught:
        read_ts(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_ts_pair_gives_train_and_test(tmp_path):
    for split in ("TRAIN", "TEST"):
        (tmp_path / f"Toy_{split}.ts").write_text(MULTIVARIATE)
    train, test = read_signals(tmp_path / "Toy_TEST.ts")
    assert len(train) == len(test) == 3


def test_long_csv_groups_orders_and_names_a_missing_column(tmp_path):
    path = tmp_path / "long.csv"
    path.write_text("id,t,x,y,label\nb,2,5,6,up\na,1,1,2,down\nb,1,3,4,up\na,2,,4,down\na,3,5,6,down\n")
    found = read_long_csv(path, "id", "label", "t")
    assert found.names == ["b", "a"] and found.labels == ["up", "down"]
    assert found.values[0].tolist() == [[3, 4], [5, 6]]  # ordered by t
    assert found.values[1][:, 0].tolist() == [1, 3, 5]  # the empty cell interpolated
    with pytest.raises(SeqtrainError, match="--label-col: no column 'class'.*its columns are id, t, x, y, label"):
        read_long_csv(path, "id", "class", "t")


def test_folder_of_csv_and_npy_files(tmp_path):
    for label, offset in (("low", 0), ("high", 5)):
        (tmp_path / label).mkdir()
        np.save(tmp_path / label / "a.npy", np.arange(6, dtype=np.float64).reshape(3, 2) + offset)
        (tmp_path / label / "b.csv").write_text("x,y\n1,2\n3,4\n")
    found = read_class_folders(tmp_path)
    assert found.labels == ["high", "high", "low", "low"]
    assert found.values[0].tolist() == [[5, 6], [7, 8], [9, 10]]
    assert found.values[1].tolist() == [[1, 2], [3, 4]]  # header row skipped


def naive_dtw(x: np.ndarray, y: np.ndarray, band: int) -> float:
    steps = len(x)
    table = np.full((steps + 1, steps + 1), np.inf)
    table[0, 0] = 0
    for i in range(1, steps + 1):
        for j in range(1, steps + 1):
            if abs(i - j) <= band:
                table[i, j] = ((x[i - 1] - y[j - 1]) ** 2).sum() + min(table[i - 1, j], table[i, j - 1], table[i - 1, j - 1])
    return table[steps, steps]


@pytest.mark.parametrize("band", [0, 2, 11])
def test_dtw_matches_the_textbook_recursion(band):
    rng = np.random.default_rng(band)
    a, b = rng.normal(size=(3, 11, 2)).astype(np.float32), rng.normal(size=(4, 11, 2)).astype(np.float32)
    fast = dtw_distances(torch.from_numpy(a), torch.from_numpy(b), band).numpy()
    slow = np.array([[naive_dtw(x, y, band) for y in b] for x in a])
    np.testing.assert_allclose(fast, slow, rtol=1e-5)


def test_one_nn_baselines_and_shifted_shapes():
    """A bump at a random place: DTW finds the class where the Euclidean distance can be fooled."""
    rng = np.random.default_rng(0)

    def bump(kind: int) -> np.ndarray:
        x = np.zeros((40, 1), dtype=np.float32)
        start = rng.integers(2, 30)
        x[start : start + 6, 0] = np.hanning(6) * (1 if kind else -1)
        return x

    train_labels = torch.tensor([0, 1] * 10)
    test_labels = torch.tensor([0, 1] * 10)
    train = [bump(int(k)) for k in train_labels]
    test = [bump(int(k)) for k in test_labels]
    rows, lines = one_nn_baselines(train, train_labels, {"test": (test, test_labels)}, 2, 0.2)
    assert rows["test"]["majority"]["accuracy"] == 0.5
    assert rows["test"]["1nn-dtw-w0.2"]["accuracy"] >= rows["test"]["1nn-euclidean"]["accuracy"]
    assert rows["test"]["1nn-dtw-w0.2"]["accuracy"] >= 0.9
    assert "DTW (Sakoe-Chiba band 8 steps" in lines[0]


def test_resample_keeps_ends():
    out = resample(np.array([[0.0], [1.0], [2.0]], dtype=np.float32), 5)
    assert out[:, 0].tolist() == [0, 0.5, 1, 1.5, 2]


def write_toy_ts(folder: Path, seed: int = 0, train: int = 40, test: int = 20) -> Path:
    """Two classes of noisy shapes (rising ramp vs a sine), unequal lengths: learnable in a few epochs."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, count in (("TRAIN", train), ("TEST", test)):
        lines = ["@problemName Toy", "@univariate true", "@equalLength false", "@classLabel true ramp sine wave", "@data"]
        for i in range(count):
            steps = int(rng.integers(20, 30))
            t = np.linspace(0, 1, steps)
            values = t * 2 - 1 if i % 2 else np.sin(2 * np.pi * t)
            values = values + rng.normal(0, 0.1, steps)
            lines.append(",".join(f"{v:.4f}" for v in values) + (":ramp" if i % 2 else ":sine wave"))
        (folder / f"Toy_{split}.ts").write_text("\n".join(lines) + "\n")
    return folder


def test_signal_task_learns_and_predicts_ts_files(tmp_path):
    data = write_toy_ts(tmp_path / "toy")
    runner = CliRunner()
    result = runner.invoke(app, [
        "fit", "--task", "signal", "--data", str(data), "--epochs", "12", "--hidden", "16", "--stack", "2",
        "--logdir", str(tmp_path / "runs"), "--seed", "1",
    ])
    assert result.exit_code == 0, result.output
    assert "labels (2): ramp 30, sine wave 30" in result.output
    run = next((tmp_path / "runs").glob("signal-*"))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] >= 0.9
    assert {"majority", "1nn-euclidean", "1nn-dtw-w0.1"} <= set(metrics["extra"]["test"])
    predicted = runner.invoke(app, ["predict", str(run), str(data / "Toy_TEST.ts"), "--top-k", "2"])
    assert predicted.exit_code == 0, predicted.output
    lines = predicted.output.strip().splitlines()
    assert len(lines) == 20
    label, probability, name = lines[0].split("\t")
    assert name == "Toy_TEST.ts:0" and set(label.split(",")) == {"ramp", "sine wave"}
    truth = ["sine wave", "ramp"] * 10
    assert sum(line.split("\t")[0].split(",")[0] == t for line, t in zip(lines, truth)) >= 18
    import seqtrain

    named = seqtrain.load(run).predict(str(data / "Toy_TEST.ts"))  # the Python API reads files as the CLI does
    assert [name for name, _ in named] == [line.split("\t")[2] for line in lines]
    assert [ps[0].label for _, ps in named] == [line.split("\t")[0].split(",")[0] for line in lines]


def test_signal_task_refuses_a_malformed_file_in_one_line(tmp_path):
    data = tmp_path / "Bad_TRAIN.ts"
    data.write_text("@classLabel true a b\n@data\n1,2,3:a\n1,2,3\n")
    result = CliRunner().invoke(app, ["fit", "--task", "signal", "--data", str(data), "--logdir", str(tmp_path)])
    assert result.exit_code == 2
    assert f"{data} line 4: no ':' before a label" in result.output


def test_reads_the_shared_ucr_sets(tmp_path):
    import tarfile

    archive = shared_data("ucr/ucr-subset-aeon1.6.0.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path, filter="data")
    train, test = read_signals(tmp_path / "PickupGestureWiimoteZ")
    assert (len(train), len(test)) == (50, 50)
    assert len({len(v) for v in train.values}) > 10  # unequal lengths
    train, test = read_signals(tmp_path / "GunPoint" / "GunPoint_TRAIN.ts")
    assert (len(train), len(test), train.values[0].shape) == (50, 150, (150, 1))


def test_predict_reads_long_csv_sequence_csv_and_npy_files(tmp_path):
    from seqtrain.tasks import build_config, make_task

    task = make_task(build_config("signal", {"id_col": "walk", "time_col": "t"}))
    (tmp_path / "long.csv").write_text("walk,t,x,y\nw2,2,5,6\nw1,1,1,2\nw2,1,3,4\n")  # no label column needed
    (tmp_path / "steps.csv").write_text("x,y\n1,2\n3,4\n5,6\n")
    np.save(tmp_path / "one.npy", np.arange(4.0))
    named = [item for name in ("long.csv", "steps.csv", "one.npy") for item in task.read_inputs(tmp_path / name)]
    assert [name for name, _ in named] == ["long.csv:w2", "long.csv:w1", "steps.csv", "one.npy"]
    assert named[0][1].tolist() == [[3, 4], [5, 6]] and named[2][1].shape == (3, 2) and named[3][1].shape == (4, 1)
    with pytest.raises(SeqtrainError, match="does not exist"):
        task.read_inputs(tmp_path / "missing.ts")
