"""Forecasting: series data, windows, normalisation, baselines, loop cells, and the three tasks end to end."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from typer.testing import CliRunner

from conftest import make, shared_data
from seqtrain.config import ForecastModel
from seqtrain.data.series import Windows, WindowLoader, next_times, read_columns, sine_series, split_points, window_starts
from seqtrain.errors import SeqtrainError
from seqtrain.models.cells import LoopRNN
from seqtrain.models.forecaster import Forecaster
from seqtrain.models.recurrent import RecurrentEncoder, make_rnn
from seqtrain.inference import load_trained
from seqtrain.training.runs import latest_run
from seqtrain.tasks.forecasting import ForecastData, ForecastMeta, fit_linear, linear_forecast, naive_forecast
from seqtrain_cli.main import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def write_csv(path: Path, rows: int, seed: int = 0, shuffle: bool = False) -> Path:
    """A noisy seasonal 'load' column driven by 'temp', with a daily time stamp."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    temp = 10 + 5 * np.sin(t / 7)
    load = 100 + 20 * np.sin(t / 5) + 0.5 * temp + rng.normal(0, 0.5, rows)
    order = rng.permutation(rows) if shuffle else t
    lines = ["day,temp,load"] + [
        f"{np.datetime64('2020-01-01') + np.timedelta64(int(i), 'D')},{temp[i]:.4f},{load[i]:.4f}" for i in order
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


# ----------------------------------------------------------------- data
def test_sine_series_shape_range_and_seed():
    a = sine_series(100, 60, seed=3)
    assert a.shape == (100, 60) and a.dtype == np.float32
    assert np.abs(a).max() <= 0.5 + 0.2 + 0.05
    assert np.array_equal(a, sine_series(100, 60, seed=3))
    assert not np.allclose(a, sine_series(100, 60, seed=4))


def test_windows_slice_a_hand_made_series():
    series = torch.arange(10, dtype=torch.float32)
    assert window_starts(10, 3, 2, 2).tolist() == [0, 2, 4]  # a window at 6 would need steps up to 10
    windows = Windows.over(series[None, :, None], series[None], window=3, horizon=2, stride=2)
    x, y = windows.gather(torch.tensor([0, 1, 2]))
    assert x[..., 0].tolist() == [[0, 1, 2], [2, 3, 4], [4, 5, 6]]
    assert y[:, -1].tolist() == [[3, 4], [5, 6], [7, 8]]  # the horizon after the last input step
    assert y[1].tolist() == [[3, 4], [4, 5], [5, 6]]  # every step's next two values (sequence to sequence)
    batches = list(WindowLoader(windows, batch_size=2))
    assert [len(b[0]) for b in batches] == [2, 1]


def test_windows_over_several_series_stay_inside_each():
    data = torch.stack([torch.arange(5.0), 100 + torch.arange(5.0)])
    windows = Windows.over(data[..., None], data, window=2, horizon=1, stride=1)
    x, y = windows.gather(torch.arange(len(windows)))
    assert len(windows) == 6
    assert x[3, :, 0].tolist() == [100, 101] and y[3, -1].tolist() == [102]
    assert y[2, -1].tolist() == [4]


def test_split_points_are_chronological():
    assert split_points(100, 0.2, 0.1) == (70, 90)
    with pytest.raises(SeqtrainError, match="--val-split"):
        split_points(100, 0.6, 0.5)


def test_normalisation_statistics_come_from_the_training_rows_only(tmp_path):
    path = tmp_path / "steps.csv"
    values = [1.0] * 35 + [3.0] * 35 + [1000.0] * 30  # the later rows would move the mean a lot
    path.write_text("v\n" + "\n".join(str(v) for v in values) + "\n")
    task = make("csv-series", data=str(path), target="v", window=4, val_split=0.2, test_split=0.1)
    data = task.prepare(quiet=True)
    assert data.meta.mean.tolist() == [2.0] and data.meta.std.tolist() == [1.0]
    x, _ = data.windows["train"].gather(torch.tensor([0]))
    assert x[0, :, 0].tolist() == [-1.0] * 4


def test_read_columns_sorts_by_time_and_puts_the_target_first(tmp_path):
    path = write_csv(tmp_path / "s.csv", 40, shuffle=True)
    names, values = read_columns(path, "load", "temp", "day")
    assert names == ["load", "temp"]
    assert np.allclose(values[:, 1], 10 + 5 * np.sin(np.arange(40) / 7), atol=1e-3)
    names, _ = read_columns(path, "load", "all", "day")
    assert names == ["load", "temp"]


# The first three years of the classic airline-passengers file (Box & Jenkins), in its own layout.
AIRLINE_1949_1951 = [112, 118, 132, 129, 121, 135, 148, 148, 136, 119, 104, 118, 115, 126, 141, 135, 125, 149,
                     170, 170, 158, 133, 114, 140, 145, 150, 178, 163, 172, 178, 199, 199, 184, 162, 146, 166]


@pytest.mark.parametrize(
    "stamps, every, expected",
    [
        (["1949-03", "1949-01", "1949-02"], 1, ["1949-04", "1949-05"]),  # monthly, rows out of order
        (["2024-01-31", "2024-02-29", "2024-03-31"], 1, ["2024-04-30", "2024-05-31"]),  # month ends
        (["2020-01-01", "2021-01-01", "2022-01-01"], 1, ["2023-01-01", "2024-01-01"]),  # yearly
        (["01.01.2009 00:10:00", "01.01.2009 00:20:00", "01.01.2009 00:30:00"], 2, ["01.01.2009 00:50:00", "01.01.2009 01:10:00"]),
        (["2024-03-30 23:00", "2024-03-31 00:00", "2024-03-31 01:00"], 1, ["2024-03-31 02:00:00", "2024-03-31 03:00:00"]),
        (["2024-03-31T01:00:00+02:00", "2024-03-31T02:00:00+02:00"], 1, ["2024-03-31T03:00:00+02:00", "2024-03-31T04:00:00+02:00"]),
    ],
)
def test_next_times_continue_the_series_at_its_own_step_and_format(tmp_path, stamps, every, expected):
    path = tmp_path / "series.csv"
    path.write_text("when,v\n" + "".join(f"{stamp},{i}\n" for i, stamp in enumerate(stamps)))
    assert next_times(path, "when", every, 2) == expected


def write_airline_csv(path: Path, order: list[int]) -> Path:
    months = [f"{1949 + i // 12}-{i % 12 + 1:02d}" for i in range(len(AIRLINE_1949_1951))]
    lines = ['"Month","Passengers"'] + [f'"{months[i]}",{AIRLINE_1949_1951[i]}' for i in order]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    return path


def test_the_airline_passengers_file_loads(tmp_path):
    order = list(range(len(AIRLINE_1949_1951)))
    shuffled = write_airline_csv(tmp_path / "shuffled.csv", order[::-1])
    names, values = read_columns(shuffled, "Passengers", None, "Month")
    assert names == ["Passengers"] and values[:, 0].tolist() == AIRLINE_1949_1951
    saved_by_a_spreadsheet = tmp_path / "bom.csv"  # a UTF-8 byte-order mark before the first column's name
    saved_by_a_spreadsheet.write_bytes(b"\xef\xbb\xbf" + shuffled.read_bytes())
    assert read_columns(saved_by_a_spreadsheet, "Passengers", None, "Month")[1][:, 0].tolist() == AIRLINE_1949_1951


@pytest.mark.parametrize(
    "stamps",
    [
        ("1949-01", "1949-02", "1950-01"),
        ("2009-01-01", "2009-01-02", "2009-02-01"),
        ("01.01.2009 00:10:00", "01.01.2009 00:20:00", "02.01.2009 00:00:00"),  # the Jena record's
        ("2009-01-01 00:10:00", "2009-01-01 00:20:00", "2009-01-02 00:00:00"),
        ("2009-01-01T00:10", "2009-01-01T00:20", "2009-01-02T00:00"),
    ],
)
@pytest.mark.parametrize("quote", ["", '"'])
@pytest.mark.parametrize("line_end", ["\n", "\r\n"])
@pytest.mark.parametrize("comma", [",", ", "])
def test_read_columns_orders_rows_by_each_time_format(tmp_path, stamps, quote, line_end, comma):
    rows = [f"{quote}{stamps[i]}{quote}{comma}{i}" for i in (2, 0, 1)]
    path = tmp_path / "s.csv"
    path.write_bytes(line_end.join([f"{quote}t{quote}{comma}{quote}v{quote}", *rows, ""]).encode())
    assert read_columns(path, "v", None, "t")[1][:, 0].tolist() == [0, 1, 2]


def test_an_unknown_time_format_names_the_value_and_the_accepted_ones(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("t,v\nJan-49,1\n")
    with pytest.raises(SeqtrainError) as error:
        read_columns(path, "v", None, "t")
    message = str(error.value)
    assert "cannot read 'Jan-49'" in message and "1949-01" in message and "01.01.2009 00:10:00" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "content, args, message",
    [
        ("a,b\n1,2\n,3\n", ("a", None, None), "missing value at .* line 3"),
        ("a,b\n1,x\n2,y\n", ("a", "b", None), "column 'b' is not numeric"),
        ("a,b\n1,2\n", ("c", None, None), "--target: no column 'c'"),
        ("a,t\n1,yesterday\n", ("a", None, "t"), "cannot read 'yesterday'"),
    ],
)
def test_read_columns_refuses_bad_files(tmp_path, content, args, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(SeqtrainError, match=message):
        read_columns(path, *args)


# ------------------------------------------------------------ baselines
def test_naive_baseline_mse_by_hand():
    x = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, -1.0]]).unsqueeze(-1)
    truth = torch.tensor([[4.0, 6.0], [-1.0, 1.0]])
    assert naive_forecast(x, 2).tolist() == [[3.0, 3.0], [-1.0, -1.0]]
    # As one series per row: windows of 3 inputs then 2 targets, in units scaled by std 2.
    series = torch.cat([x[..., 0], truth], 1)
    windows = Windows.over(series.unsqueeze(-1), series, window=3, horizon=2, stride=1)
    meta = ForecastMeta(["v"], "v", 3, 2, torch.tensor([0.0]), torch.tensor([2.0]))
    data = ForecastData(None, None, None, meta, windows={"train": windows, "val": windows})
    # naive errors: (1, 3) and (0, 2) -> squares 1, 9, 0, 4 -> mean 3.5, times std^2 = 14; |errors| mean 1.5 * 2 = 3
    assert data.baselines["val"]["naive"] == pytest.approx({"mse": 14.0, "mae": 3.0})
    assert "test" not in data.baselines


def test_linear_baseline_recovers_a_linear_recurrence():
    series = torch.zeros(200)
    series[:2] = torch.tensor([1.0, 0.5])
    for t in range(2, 200):  # a damped oscillation: exactly linear in the two previous values
        series[t] = 1.6 * series[t - 1] - 0.8 * series[t - 2] + 0.1
    windows = Windows.over(series[None, :, None], series[None], window=4, horizon=3, stride=1)
    x, y = windows.gather(torch.arange(len(windows)))
    assert (linear_forecast(fit_linear(windows, chunk=50), x) - y[:, -1]).abs().max() < 1e-4


# ---------------------------------------------------------------- cells
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_loop_cells_match_torch_layers(cell):
    torch.manual_seed(0)
    reference = make_rnn(cell, 3, 5, num_layers=2)
    loop = LoopRNN(cell, 3, 5, num_layers=2)
    with torch.no_grad():
        for index, layer in enumerate(loop.layers):
            w_ih, w_hh = getattr(reference, f"weight_ih_l{index}"), getattr(reference, f"weight_hh_l{index}")
            b_ih, b_hh = getattr(reference, f"bias_ih_l{index}"), getattr(reference, f"bias_hh_l{index}")
            layer.input_proj.weight.copy_(w_ih)
            layer.hidden_proj.weight.copy_(w_hh)
            if cell == "gru":
                layer.input_proj.bias.copy_(b_ih)
                layer.hidden_proj.bias.copy_(b_hh)
            else:
                layer.input_proj.bias.copy_(b_ih + b_hh)
    x = torch.randn(4, 7, 3)
    expected_out, expected_state = reference(x)
    out, state = loop(x)
    assert torch.allclose(out, expected_out, atol=1e-5)
    if cell == "lstm":
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(state, expected_state))
    else:
        assert torch.allclose(state, expected_state, atol=1e-5)


def test_make_rnn_picks_loop_cells_only_when_needed():
    assert isinstance(make_rnn("gru", 2, 4), nn.GRU)
    assert isinstance(make_rnn("gru", 2, 4, recurrent_dropout=0.2), LoopRNN)
    assert isinstance(make_rnn("rnn", 2, 4, layer_norm=True), LoopRNN)


def test_recurrent_dropout_is_random_in_training_and_off_in_eval():
    torch.manual_seed(0)
    rnn = LoopRNN("lstm", 2, 8, recurrent_dropout=0.5)
    x = torch.randn(3, 6, 2)
    rnn.train()
    assert not torch.allclose(rnn(x)[0], rnn(x)[0])
    rnn.eval()
    assert torch.equal(rnn(x)[0], rnn(x)[0])
    # the first step has no recurrent input yet, so dropping the state cannot change it
    rnn.train()
    assert torch.allclose(rnn(x)[0][:, 0], rnn.eval()(x)[0][:, 0])


def test_layer_norm_cell_normalises_the_pre_activation():
    torch.manual_seed(0)
    rnn = LoopRNN("rnn", 2, 16, layer_norm=True)
    x = 50 * torch.randn(3, 4, 2)  # huge inputs would saturate a plain tanh cell
    out, _ = rnn(x)
    pre = torch.atanh(out.clamp(-0.999999, 0.999999))
    assert torch.allclose(pre.mean(-1), torch.zeros(3, 4), atol=1e-3)
    assert torch.allclose(pre.std(-1, unbiased=False), torch.ones(3, 4), atol=1e-2)


def test_encoder_with_layer_norm_cells_stays_padding_exact():
    torch.manual_seed(0)
    encoder = RecurrentEncoder("gru", 3, 6, layers=2, bidirectional=True, packing="on", layer_norm=True).eval()
    x = torch.randn(2, 5, 3)
    lengths = torch.tensor([5, 3])
    outputs, last = encoder(x, lengths)
    alone_outputs, alone_last = encoder(x[1:, :3], lengths[1:])
    assert torch.allclose(outputs[1, :3], alone_outputs[0], atol=1e-6)
    assert torch.allclose(last[1], alone_last[0], atol=1e-6)
    assert outputs[1, 3:].abs().sum() == 0


@pytest.mark.parametrize("every_step, shape", [(False, (2, 10)), (True, (2, 50, 10))])
def test_forecaster_output_shapes(every_step, shape):
    model = Forecaster(1, 10, 50, ForecastModel(cell="gru", hidden=8, layers=2, every_step=every_step))
    assert model(*model.example_input()).shape == shape


def test_residual_forecaster_starts_from_the_naive_forecast():
    model = Forecaster(2, 3, 5, ForecastModel(cell="lstm", hidden=4, residual=True, every_step=True))
    nn.init.zeros_(model.head.weight)
    nn.init.zeros_(model.head.bias)
    x = torch.randn(2, 5, 2)
    assert torch.equal(model(x), x[..., :1].expand(-1, -1, 3))  # each step repeats the target's value there
    model.every_step = False
    assert torch.equal(model(x), naive_forecast(x, 3))


# ----------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def sine_run(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("runs")
    result = invoke("fit", "--task", "sine", "--logdir", logdir, "--epochs", "2", "--max-steps", "60",
                    "--hidden", "16", "--batch-size", "64", "--lr", "0.01")
    assert result.exit_code == 0, result.output
    return latest_run(logdir), result


def test_sine_rnn_beats_the_naive_baseline(sine_run):
    run, result = sine_run
    metrics = json.loads((run / "metrics.json").read_text())
    naive = metrics["extra"]["val"]["naive"]["mse"]
    assert 0.015 < naive < 0.025  # the lecture's naive figure, ~0.020
    assert metrics["best_val"]["mse"] < naive / 2, metrics
    assert metrics["test"]["mse"] < metrics["extra"]["test"]["naive"]["mse"] / 2
    assert metrics["extra"]["val"]["linear"]["mse"] < 0.006
    assert "naive val" in result.output and "linear test" in result.output
    assert {"best.pt", "last.pt", "config.toml"} <= {p.name for p in run.iterdir()}
    checkpoint = torch.load(run / "best.pt", weights_only=True)
    assert checkpoint["meta"]["horizon"] == 1 and checkpoint["meta"]["window"] == 50


def test_sine_run_logs_baselines_to_tensorboard(sine_run):
    run, _ = sine_run
    events = EventAccumulator(str(run))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"epoch/val/mse", "baseline/val/naive/mse", "baseline/test/linear/mse"} <= scalars
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "forecast/plot/text_summary" in events.Tags()["tensors"]  # the note saying why there is no figure
    else:
        assert "forecast/val" in events.Tags()["images"]


def test_evaluate_a_forecasting_run(sine_run):
    run, _ = sine_run
    result = invoke("evaluate", run)
    assert result.exit_code == 0, result.output
    assert "mse" in result.output
    assert "naive test" in result.output and "linear test" in result.output  # baselines beside the model


def test_sine_ten_steps_sequence_to_sequence(tmp_path):
    result = invoke("fit", "--task", "sine", "--horizon", "10", "--every-step", "--logdir", tmp_path, "--epochs", "1",
                    "--max-steps", "40", "--hidden", "16", "--batch-size", "64", "--lr", "0.01", "--quiet")
    assert result.exit_code == 0, result.output
    metrics = json.loads((latest_run(tmp_path) / "metrics.json").read_text())
    assert metrics["extra"]["val"]["naive"]["mse"] > 0.15  # ten steps ahead, repeating the last value is poor
    assert metrics["best_val"]["mse"] < metrics["extra"]["val"]["naive"]["mse"]


def test_csv_series_reports_original_units(tmp_path):
    path = write_csv(tmp_path / "load.csv", 600, shuffle=True)
    result = invoke("fit", "--task", "csv-series", "--data", path, "--target", "load", "--features", "temp",
                    "--time-col", "day", "--window", "12", "--horizon", "2", "--logdir", tmp_path / "runs",
                    "--epochs", "3", "--hidden", "16", "--lr", "0.01", "--recurrent-dropout", "0.1", "--layer-norm", "--quiet")
    assert result.exit_code == 0, result.output
    run = latest_run(tmp_path / "runs")
    metrics = json.loads((run / "metrics.json").read_text())
    # 'load' swings by ±20 around 100: naive errors of a few units, in the column's own units
    assert 1 < metrics["extra"]["val"]["naive"]["mae"] < 20
    assert metrics["best_val"]["mse"] < metrics["extra"]["val"]["naive"]["mse"]
    meta = torch.load(run / "best.pt", weights_only=True)["meta"]
    assert meta["features"] == ["load", "temp"] and 90 < float(meta["mean"][0]) < 110

    # `seqtrain forecast` on the file cut two rows short reads the last test window: same numbers as the model there
    ordered = write_csv(tmp_path / "ordered.csv", 600)
    lines = ordered.read_text().splitlines()
    ordered.write_text("\n".join(lines[:-2]) + "\n")
    result = invoke("forecast", run, "--data", ordered)
    assert result.exit_code == 0, result.output
    printed = [line.split("\t") for line in result.output.strip().splitlines()]
    assert [when for when, _ in printed] == [line.split(",")[0] for line in lines[-2:]]  # the cut rows' days
    trained = load_trained(run / "best.pt", "cpu")
    model, meta = trained.model, trained.task.meta
    test = trained.task.prepare(meta, quiet=True).windows["test"]
    x, y = test.gather(torch.tensor([len(test) - 1]))
    with torch.no_grad():
        expected = model(x)[0] * meta.std[0] + meta.mean[0]
    assert [float(v) for _, v in printed] == pytest.approx(expected.tolist(), rel=1e-4)
    truth = [float(line.split(",")[2]) for line in lines[-2:]]
    assert (y[0, -1] * meta.std[0] + meta.mean[0]).tolist() == pytest.approx(truth, abs=1e-3)


@pytest.mark.parametrize(
    "args, message",
    [
        ((), "needs --data FILE and --target"),
        (("--target", "load", "--window", "250"), "too few for --window 250"),
        (("--target", "day"), "column 'day' is not numeric"),
        (("--target", "load", "--recurrent-dropout", "1.5"), "--recurrent-dropout must be below 1"),
    ],
)
def test_csv_series_mistakes_are_one_line_errors(tmp_path, args, message):
    path = write_csv(tmp_path / "load.csv", 300)
    data = ("--data", path) if args else ()
    result = invoke("fit", "--task", "csv-series", *data, *args, "--logdir", tmp_path / "runs", "--quiet")
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_forecast_refuses_a_file_shorter_than_the_window(sine_run, tmp_path):
    run, _ = sine_run
    short = tmp_path / "short.csv"
    short.write_text("value\n0.1\n0.2\n")
    result = invoke("forecast", run, "--data", short)
    assert result.exit_code == 2 and "the model reads 50" in result.output


def test_jena_downloads_through_a_mirror(tmp_path):
    subset = shared_data("jena-climate-subset/jena_climate_first4000rows.csv")
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with zipfile.ZipFile(mirror / "jena_climate_2009_2016.csv.zip", "w") as archive:
        archive.write(subset, "jena_climate_2009_2016.csv")
    result = invoke("fit", "--task", "jena", "--mirror", mirror, "--every", "1", "--window", "36", "--horizon", "6",
                    "--logdir", tmp_path / "runs", "--epochs", "1", "--max-steps", "10", "--quiet")
    assert result.exit_code == 0, result.output
    run = latest_run(tmp_path / "runs")
    meta = torch.load(run / "best.pt", weights_only=True)["meta"]
    assert meta["target"] == "T (degC)" and len(meta["features"]) == 11  # 12 columns minus the time stamp
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 < metrics["extra"]["test"]["naive"]["mae"] < 3  # degrees Celsius, one hour ahead in January


def test_forecast_plots_run_on_the_series_time_axis(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "hourly.csv"
    lines = [f"{np.datetime64('2024-01-01T00:00') + np.timedelta64(i, 'h')},{np.sin(i / 5):.3f}" for i in range(120)]
    path.write_text("time,v\n" + "\n".join(lines) + "\n")
    task = make("csv-series", data=str(path), target="v", time_col="time", window=6, horizon=2, hidden=4)
    data = task.prepare(quiet=True)
    figures = []
    log = SimpleNamespace(scalars=lambda *a: None, figure=lambda tag, figure, step: figures.append(figure))
    task.on_epoch_end(task.build_model(data.meta), data, log, 1)
    axis = figures[0].axes[-1]
    assert axis.get_xlabel() == "hours from the last input"
    assert list(axis.lines[0].get_xdata()) == [-5, -4, -3, -2, -1, 0] and list(axis.lines[1].get_xdata()) == [1, 2]
