"""The seams through the CLI: per-task flags and help, --config, resume, checkpoint formats, inference dispatch."""

import json
import re

import torch
from typer.testing import CliRunner

from seqtrain.training.checkpoint import load_checkpoint
from seqtrain.training.runs import latest_run
from seqtrain_cli.main import app

runner = CliRunner()
SINE = ["--task", "sine", "--epochs", "2", "--max-steps", "8", "--hidden", "8", "--layers", "1", "--batch-size", "16"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_an_irrelevant_flag_exits_2_naming_it_before_any_data_loads(tmp_path):
    # imdb with no data given would download; the refusal comes first
    result = invoke("fit", "--task", "imdb", "--window", "10", "--logdir", tmp_path)
    assert result.exit_code == 2
    assert "--window is not a setting of task 'imdb'" in result.output and "--help" in result.output
    result = invoke("fit", "--task", "imdb", "--data", tmp_path / "rt-polarity.tsv", "--logdir", tmp_path)
    assert result.exit_code == 2 and "does not exist" in result.output  # --data is read, never silently ignored
    assert not any(tmp_path.iterdir())  # no run folder was left behind


def shown_default(help_text: str, flag: str) -> str:
    """The [default: ...] shown for `flag` in a rich help panel (its text may wrap over several lines)."""
    entry = help_text.split(f" {flag} ", 1)[1].split("│ --", 1)[0]
    return re.search(r"\[default: ([^\]]*)\]", entry).group(1)


def test_help_lists_the_tasks_own_flags_with_its_defaults():
    sine = invoke("fit", "--task", "sine", "--help").output
    assert "--window" in sine and "--horizon" in sine and "--pooling" not in sine and "--bptt" not in sine
    assert shown_default(sine, "--hidden") == "32"  # sine's own default, not the schema's 128
    imdb = invoke("fit", "--help").output  # no --task: imdb's flags
    assert "--pooling" in imdb and "--window" not in imdb
    assert shown_default(imdb, "--hidden") == "96"
    assert "$SEQTRAIN_CACHE" in imdb  # help text with brackets is not eaten as markup


def test_config_file_reruns_a_run_bit_for_bit(tmp_path):
    first = invoke("fit", *SINE, "--logdir", tmp_path / "a")
    assert first.exit_code == 0, first.output
    original = latest_run(tmp_path / "a")
    again = invoke("fit", "--config", original / "config.toml", "--logdir", tmp_path / "b")
    assert again.exit_code == 0, again.output
    rerun = latest_run(tmp_path / "b")
    assert (rerun / "config.toml").read_text() == (original / "config.toml").read_text().replace(
        str(tmp_path / "a"), str(tmp_path / "b"))
    a, b = (json.loads((r / "metrics.json").read_text()) for r in (original, rerun))
    assert a["test"] == b["test"] and a["best_val"] == b["best_val"]  # bit for bit on CPU
    other = invoke("fit", "--config", original / "config.toml", "--task", "imdb")
    assert other.exit_code == 2 and "is a 'sine' config" in other.output


def test_resume_with_more_epochs_rewrites_the_config_and_counts_the_whole_wall_time(tmp_path):
    assert invoke("fit", *SINE, "--logdir", tmp_path).exit_code == 0
    run = latest_run(tmp_path)
    first_wall = json.loads((run / "metrics.json").read_text())["wall_time_s"]
    result = invoke("fit", "--resume", run, "--epochs", "3")
    assert result.exit_code == 0, result.output
    assert "epochs = 3" in (run / "config.toml").read_text()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == 3 and metrics["wall_time_s"] > first_wall
    refused = invoke("fit", "--resume", run, "--epochs", "4", "--hidden", "16")
    assert refused.exit_code == 2 and "--hidden" in refused.output


def test_max_steps_bounds_validation_and_test_too(tmp_path, monkeypatch):
    from seqtrain.tasks.forecasting import ForecastTask

    steps = {"train": 0, "eval": 0}
    original = ForecastTask.step

    def counting(self, model, batch, state, ctx):
        steps["train" if ctx.training else "eval"] += 1
        return original(self, model, batch, state, ctx)

    monkeypatch.setattr(ForecastTask, "step", counting)
    assert invoke("fit", *SINE, "--logdir", tmp_path).exit_code == 0
    assert steps == {"train": 16, "eval": 2 * 8 + 8}  # two epochs of 8 steps, 8 val steps each, 8 test steps


def test_old_and_foreign_checkpoints_get_one_line(tmp_path):
    old = tmp_path / "old.pt"
    torch.save({"config": {"task": "imdb"}, "meta": {}, "model": {}, "epoch": 1}, old)
    result = invoke("evaluate", old)
    assert result.exit_code == 2 and "earlier seqtrain" in result.output
    foreign = tmp_path / "foreign.pt"
    torch.save({"foo": 1}, foreign)
    result = invoke("evaluate", foreign)
    assert result.exit_code == 2 and "not a seqtrain checkpoint" in result.output
    hostile = tmp_path / "hostile.pt"
    torch.save({"x": object()}, hostile)  # not loadable with weights_only=True
    result = invoke("evaluate", hostile)
    assert result.exit_code == 2 and "weights_only" not in result.output and "Traceback" not in result.output


def test_commands_dispatch_on_the_tasks_ability(tmp_path):
    assert invoke("fit", *SINE, "--logdir", tmp_path).exit_code == 0
    result = invoke("generate", "latest", "--logdir", tmp_path)
    assert result.exit_code == 2 and "does not generate" in result.output and "seqtrain forecast" in result.output
    result = invoke("predict", "latest", "text", "--logdir", tmp_path)
    assert result.exit_code == 2 and "does not predict" in result.output
    checkpoint = load_checkpoint(latest_run(tmp_path) / "best.pt")
    assert checkpoint["meta"]["format"] == 1 and checkpoint["state"]["epoch"] == 2


def test_tasks_lists_every_task_with_its_defaults():
    result = invoke("tasks")
    assert result.exit_code == 0
    for name in ("imdb", "shakespeare", "wikitext2", "sine", "jena", "translate", "dates"):
        assert name in result.output
    assert "hidden=96" in result.output.replace("\n", "")
