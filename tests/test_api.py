"""The Python API: fit, load and use models from code, checked like the CLI's flags and silent by default."""

import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import seqtrain
from seqtrain import SeqtrainError
from seqtrain_cli.main import app

runner = CliRunner()
SINE = dict(epochs=2, max_steps=8, hidden=8, layers=1, batch_size=16, window=20, horizon=3)


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def cli_error(*args) -> str:
    """The one line a command prints for a user mistake, without its 'error: ' prefix."""
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    return " ".join(result.output.split()).removeprefix("error: ")


@pytest.fixture(scope="module")
def sine_run(tmp_path_factory):
    """A tiny sine run through the API, with the epochs its callback saw and what it printed."""
    logdir = tmp_path_factory.mktemp("runs")
    seen = []
    with pytest.MonkeyPatch.context() as patch:
        out, err = [], []
        patch.setattr(sys, "stdout", _Sink(out))
        patch.setattr(sys, "stderr", _Sink(err))
        run = seqtrain.fit("sine", logdir=logdir, callbacks=[lambda epoch, metrics: seen.append((epoch, metrics))], **SINE)
    return run, seen, "".join(out) + "".join(err)


class _Sink:
    """A stand-in for stdout/stderr that keeps what is written (module fixtures cannot use capsys)."""

    def __init__(self, parts: list[str]):
        self.parts = parts

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def test_import_does_not_import_torch():
    code = "import sys, seqtrain; print(sorted({'torch', 'rich', 'typer'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


def test_fit_returns_the_run_with_its_metrics_and_checkpoints(sine_run):
    run, _, _ = sine_run
    assert run.run_dir.is_dir() and run.task == "sine" and run.epochs == 2 and not run.interrupted
    assert run.best_checkpoint == run.run_dir / "best.pt" and run.best_checkpoint.is_file() and run.last_checkpoint.is_file()
    report = json.loads((run.run_dir / "metrics.json").read_text())
    assert run.test == report["test"] and run.best_val == report["best_val"] and {"mse", "mae"} <= set(run.test)
    assert run.extra == report["extra"] and "naive" in run.extra["test"]
    assert 'task = "sine"' in (run.run_dir / "config.toml").read_text()


def test_library_use_prints_nothing_by_default(sine_run):
    _, _, printed = sine_run
    assert printed == ""


def test_progress_true_shows_the_bars_and_report(tmp_path, capsys):
    seqtrain.fit("sine", logdir=tmp_path, progress=True, **{**SINE, "epochs": 1})
    out = capsys.readouterr().out
    assert "train 1/1" in out and "sine: best epoch" in out


def test_callbacks_see_every_epoch_with_train_and_val_metrics(sine_run):
    run, seen, _ = sine_run
    assert [epoch for epoch, _ in seen] == [1, 2]
    assert {"train_loss", "train_mse", "val_loss", "val_mse"} <= set(seen[0][1])
    best = min(seen, key=lambda item: item[1]["val_loss"])[1]
    assert run.best_val["loss"] == pytest.approx(best["val_loss"])


def test_a_callback_returning_true_stops_the_run_and_the_best_is_still_tested(tmp_path):
    calls = []
    run = seqtrain.fit("sine", logdir=tmp_path, **{**SINE, "epochs": 4},
                       callbacks=[lambda epoch, metrics: calls.append(epoch) or epoch == 2, lambda e, m: 1])
    assert calls == [1, 2] and run.epochs == 2 and not run.interrupted  # 1 is truthy but not True: no stop
    assert "mse" in run.test


def test_fit_runs_in_a_thread_other_than_the_main_one(tmp_path):
    runs = []
    worker = threading.Thread(target=lambda: runs.append(seqtrain.fit("sine", logdir=tmp_path, **{**SINE, "epochs": 1})))
    worker.start()
    worker.join()
    assert runs and runs[0].best_checkpoint.is_file()


@pytest.mark.parametrize(
    "settings,flags",
    [
        ({"window": 10}, ["--window", "10"]),  # not a setting of imdb
        ({"cell": "transformer"}, ["--cell", "transformer"]),
        ({"epochs": 0}, ["--epochs", "0"]),
        ({"val_split": 1.5}, ["--val-split", "1.5"]),
    ],
)
def test_a_bad_setting_raises_the_flags_one_line_message(settings, flags, tmp_path):
    with pytest.raises(SeqtrainError) as raised:
        seqtrain.fit("imdb", logdir=tmp_path, **settings)
    assert str(raised.value) == cli_error("fit", "--task", "imdb", "--logdir", tmp_path, *flags)
    assert not any(tmp_path.iterdir())  # refused before any run folder or data


def test_settings_of_the_wrong_type_are_refused_in_one_line(tmp_path):
    with pytest.raises(SeqtrainError, match=r"^--epochs must be an integer, not '2'$"):
        seqtrain.fit("sine", logdir=tmp_path, epochs="2")
    with pytest.raises(SeqtrainError, match=r"^--bidirectional must be True or False, not 1$"):
        seqtrain.fit("imdb", logdir=tmp_path, bidirectional=1)
    with pytest.raises(SeqtrainError, match=r"^--data must be a string or None, not 3$"):
        seqtrain.fit("imdb", logdir=tmp_path, data=3)
    with pytest.raises(SeqtrainError, match="unknown task 'nope'"):
        seqtrain.fit("nope")


def test_resume_and_config_follow_the_cli_rules(sine_run, tmp_path):
    run, _, _ = sine_run
    with pytest.raises(SeqtrainError) as raised:
        seqtrain.fit(resume=run.run_dir, hidden=16)
    assert str(raised.value) == cli_error("fit", "--resume", run.run_dir, "--hidden", "16")
    with pytest.raises(SeqtrainError, match="already finished 2 epochs"):
        seqtrain.fit(resume=run.run_dir)
    again = seqtrain.fit(config=run.run_dir / "config.toml", logdir=tmp_path)  # a Path is taken for a string setting
    assert again.test == run.test  # bit for bit on CPU


def test_load_forecasts_like_the_cli(sine_run, tmp_path):
    run, _, _ = sine_run
    t = np.arange(40)
    csv = tmp_path / "series.csv"
    csv.write_text("value\n" + "".join(f"{0.5 * np.sin(0.3 * i):.5f}\n" for i in t))
    model = seqtrain.load(run.run_dir, device="cpu")
    assert model.task == "sine" and model.ability == "forecast" and model.checkpoint == run.best_checkpoint
    values = model.forecast(csv)
    assert len(values) == 3 and all(isinstance(v, float) for v in values)
    printed = invoke("forecast", run.run_dir, "--data", csv).output.splitlines()
    assert printed == [f"{step}\t{value:.6g}" for step, value in enumerate(values, start=1)]


def test_evaluate_scores_the_best_checkpoint_as_fit_did(sine_run):
    run, _, _ = sine_run
    model = seqtrain.load(run.run_dir)
    rows = model.evaluate("test")
    assert rows["test"] == pytest.approx(run.test) and "naive test" in rows
    with pytest.raises(SeqtrainError, match="--split must be test or val, not 'train'"):
        model.evaluate("train")


def test_a_model_refuses_an_ability_its_task_lacks_naming_the_one_it_has(sine_run):
    model = seqtrain.load(sine_run[0].run_dir)
    with pytest.raises(SeqtrainError, match=r"does not generate; .*seqtrain forecast.*model\.forecast\(\.\.\.\)"):
        model.generate(prime="x")
    with pytest.raises(SeqtrainError, match="does not predict"):
        model.predict(["some text"])
    with pytest.raises(AttributeError):
        model.no_such_thing


def test_a_new_ability_shows_up_on_the_model_through_the_task(sine_run):
    """A task's ability method appears as model.<ability>, the model and device filled in, its signature kept."""
    model = seqtrain.load(sine_run[0].run_dir)
    task = model.trained.task

    class Echo(type(task)):
        ability = "echo"

        def echo(self, model, text: str, device, times: int = 1) -> str:
            """Repeat the text."""
            assert model is not None and device.type == "cpu"
            return text * times

    task.__class__ = Echo
    assert "echo" in dir(model)
    assert model.echo("ab", times=2) == "abab" and model.echo("ab", 3) == "ababab"
    assert str(__import__("inspect").signature(model.echo)) == "(text: str, times: int = 1) -> str"
    assert model.echo.__doc__ == "Repeat the text."


def test_load_and_predict_texts(imdb_dir, tmp_path):
    run = seqtrain.fit("imdb", data_dir=imdb_dir, logdir=tmp_path, epochs=1, max_steps=4, embed_dim=16, hidden=8,
                       batch_size=32)
    model = seqtrain.load(run.run_dir, device="cpu")
    predictions = model.predict(["a wonderful film", "dull and boring"], top_k=2)
    assert [len(p) for p in predictions] == [2, 2]
    assert {p.label for p in predictions[0]} == {"neg", "pos"}
    assert sum(p.probability for p in predictions[0]) == pytest.approx(1.0)
    assert model.predict("one text")[0][0].label in ("neg", "pos") and model.predict([]) == []
    with pytest.raises(SeqtrainError, match="^--top-k must be at least 1, not 0$"):
        model.predict(["x"], top_k=0)


def test_load_and_generate_text(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sees the mat.\na dog likes a bone.\n" * 200)
    run = seqtrain.fit("charlm", text=corpus, logdir=tmp_path / "runs", epochs=1, max_steps=10, embed_dim=8, hidden=16,
                       batch_size=8, bptt=16)
    model = seqtrain.load("latest", logdir=tmp_path / "runs")
    text = model.generate(prime="the ", length=30, temperature=0.5, seed=1)
    assert text.startswith("the ") and len(text) == 34
    assert "".join(model.generate(prime="the ", length=30, temperature=0.5, seed=1, stream=True)) == text
    assert text == invoke("generate", run.run_dir, "--prime", "the ", "--length", "30", "-T", "0.5", "--seed", "1").output[:-1]
    with pytest.raises(SeqtrainError, match="^--length must be 0 or more, not -1$"):
        model.generate(length=-1)


def test_load_and_translate_like_the_cli(tmp_path):
    run = seqtrain.fit("dates", num_pairs=300, epochs=1, max_steps=5, hidden=16, embed_dim=16, batch_size=32,
                       logdir=tmp_path)
    model = seqtrain.load(run.run_dir)
    texts = ["3 may 1998", "july 14, 2021"]
    greedy, beam = model.translate(texts), model.translate(texts, beam=2, max_len=12)
    assert len(greedy) == len(beam) == 2 and all(isinstance(t, str) for t in greedy + beam)
    assert model.translate("3 may 1998") == greedy[:1] and model.translate([]) == []
    printed = invoke("translate", run.run_dir, *texts, "--beam", "2", "--max-len", "12").output.splitlines()
    assert printed == beam
    with pytest.raises(SeqtrainError, match="^--beam must be at least 1, not 0$"):
        model.translate(texts, beam=0)


def test_tasks_lists_abilities_and_settings_with_each_tasks_defaults():
    found = seqtrain.list_tasks()
    assert {"imdb", "sine", "charlm", "translate"} <= set(found)
    assert found["imdb"].ability == "predict" and found["sine"].ability == "forecast"
    assert found["charlm"].ability == "generate" and found["translate"].ability == "translate"
    assert found["sine"].settings["hidden"].default == 32 and found["imdb"].settings["hidden"].default == 96
    assert "window" in found["sine"].settings and "window" not in found["imdb"].settings
    assert found["imdb"].settings["cell"].choices == ("rnn", "lstm", "gru")


def test_the_guides_error_examples_are_what_fit_raises(tmp_path, monkeypatch):
    """docs/python-api.md quotes `>>> seqtrain.fit(...)` lines with the SeqtrainError each raises: they must hold."""
    guide = (Path(__file__).resolve().parents[1] / "docs" / "python-api.md").read_text()
    examples = re.findall(r"^>>> (seqtrain\.fit\(.*\))\nSeqtrainError: (.*)$", guide, re.MULTILINE)
    assert len(examples) >= 4
    monkeypatch.chdir(tmp_path)  # where a run folder would go, were one made
    for call, message in examples:
        with pytest.raises(SeqtrainError) as raised:
            eval(call, {"seqtrain": seqtrain})
        assert str(raised.value) == message, call
    assert not any(tmp_path.iterdir())
