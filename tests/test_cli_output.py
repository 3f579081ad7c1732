"""What the CLI prints: whole texts into pipes, nothing cut at 80 columns, markup never eating user text,
runs that evaluate from any folder, and the small conventions (--version, --print-config, the bare fit)."""

import ast
import csv
import io
import random
import re
import shutil
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console
from typer.testing import CliRunner

import seqtrain_cli.main as cli
from seqtrain.tasks import REGISTRY
from seqtrain.training.progress import epoch_progress, format_stats
from seqtrain.training.runs import latest_run
from seqtrain_cli.main import app

runner = CliRunner()
SMALL = ["--embed-dim", "16", "--hidden", "8", "--batch-size", "16", "--epochs", "1", "--threads", "1", "--quiet"]
LABELS = ("[pos]", "[neg]")  # labels that look like rich markup tags


def invoke(*args, **kwargs):
    return runner.invoke(app, [str(a) for a in args], **kwargs)


def write_texts(path, rows: int = 120, seed: int = 0):
    rng = random.Random(seed)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for i in range(rows):
            good = i % 2 == 0
            words = [rng.choice(["plot", "actor", "scene", "film"]) for _ in range(8)]
            words.insert(rng.randrange(8), "great" if good else "awful")
            writer.writerow([" ".join(words), LABELS[0] if good else LABELS[1]])
    return path


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    """A small text run trained from a data path typed relative to the working folder."""
    root = tmp_path_factory.mktemp("typed")
    (root / "mydata").mkdir()
    write_texts(root / "mydata" / "texts.csv")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        result = invoke("fit", "--task", "text", "--data", "mydata/texts.csv", "--logdir", "runs", *SMALL)
    assert result.exit_code == 0, result.output
    return root, latest_run(root / "runs")


def test_predict_echoes_the_whole_text_into_a_pipe(text_run):
    _, run = text_run
    long = "great " + "and a very long sentence about the film " * 8
    result = invoke("predict", run, long.strip(), "awful film")
    assert result.exit_code == 0, result.output
    fields = [line.split("\t") for line in result.output.strip().splitlines()]
    assert [len(f) for f in fields] == [3, 3] and fields[0][2] == long.strip() and fields[1][2] == "awful film"


def test_evaluate_works_from_another_folder_and_names_the_config_when_the_data_moved(text_run, tmp_path, monkeypatch):
    root, run = text_run
    config = (run / "config.toml").read_text()
    assert tomllib.loads(config)["data"]["data"] == str(root / "mydata" / "texts.csv")
    assert "# typed: mydata/texts.csv" in config
    monkeypatch.chdir(tmp_path)
    result = invoke("evaluate", run)
    assert result.exit_code == 0, result.output
    shutil.move(root / "mydata", root / "moved")
    try:
        result = invoke("evaluate", run)
    finally:
        shutil.move(root / "moved", root / "mydata")
    assert result.exit_code == 2
    assert f"{run / 'config.toml'}" in result.output.replace("\n", "") and "--data with where" in result.output


@pytest.mark.parametrize("task", sorted(REGISTRY))
def test_every_task_help_is_whole_at_80_columns(task):
    result = invoke("fit", "--task", task, "--help", env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "…" not in result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80
    flags = re.findall(r"^  (--[a-z0-9-]+)", result.output, re.MULTILINE)
    assert "--epochs" in flags and all(f"{flag} " in result.output or f"{flag}\n" in result.output for flag in flags)


def test_evaluate_table_is_whole_at_80_columns_with_counts_as_integers(text_run, monkeypatch):
    _, run = text_run
    monkeypatch.setattr(cli, "console", Console(width=80, file=io.StringIO()))
    result = invoke("evaluate", run)
    assert result.exit_code == 0, result.output
    shown = cli.console.file.getvalue()
    assert "…" not in shown and max(len(line) for line in shown.splitlines()) <= 80
    assert "accuracy" in shown and "support" in shown
    assert all(label in shown for label in LABELS)  # class rows keep their bracketed labels
    supports = re.findall(r"class \[(?:pos|neg)\] test.*?(\S+) *│\s*$", shown, re.MULTILINE)
    assert supports and all(value.isdigit() for value in supports), shown


def test_progress_is_whole_at_80_columns():
    out = io.StringIO()
    console = Console(file=out, width=80)
    with epoch_progress(console) as progress:
        bar = progress.add_task("train 10/10", total=12345, stats="")
        progress.update(bar, completed=12345, stats=format_stats({"loss": 1.2345, "accuracy": 0.8765}, 12345.6, "tok"))
    shown = out.getvalue()
    assert "…" not in shown and "12345/12345" in shown and "12,346 tok/s" in shown and "0:00:00" in shown


def test_markup_never_eats_user_text(tmp_path, monkeypatch):
    """An error naming a path with brackets, a task's note with an install hint, labels in tables."""
    missing = tmp_path / "data[plot].csv"
    result = invoke("fit", "--task", "text", "--data", missing, *SMALL)
    assert result.exit_code == 2 and "data[plot].csv" in result.output

    import seqtrain.tasks.forecasting as forecasting

    monkeypatch.setattr(forecasting, "have_matplotlib", lambda: False)
    series = tmp_path / "series.csv"
    series.write_text("v\n" + "".join(f"{i % 7}\n" for i in range(200)))
    result = invoke("fit", "--task", "csv-series", "--data", series, "--target", "v", "--window", "8", "--epochs", "1",
                    "--max-steps", "2", "--hidden", "4", "--threads", "1", "--logdir", tmp_path / "runs[1]")
    assert result.exit_code == 0, result.output
    words = " ".join(result.output.split())  # as printed, wrapped at the console's width
    assert "pip install 'seqtrain[plot]'" in words and "runs[1]" in words

    tasks = invoke("tasks", env={"COLUMNS": "400"})
    assert "[--features COL,...]" in tasks.output


def test_version_completion_and_print_config(tmp_path):
    from importlib.metadata import version

    assert invoke("--version").output.strip() == f"seqtrain {version('seqtrain')}"
    assert "--install-completion" in invoke("--help").output
    result = invoke("fit", "--task", "sine", "--epochs", "2", "--logdir", tmp_path / "runs", "--print-config")
    assert result.exit_code == 0, result.output
    config = tomllib.loads(result.output)
    assert config["task"] == "sine" and config["train"]["epochs"] == 2
    assert not (tmp_path / "runs").exists()  # nothing trained


def test_bare_fit_says_what_it_is_about_to_do(monkeypatch):
    from seqtrain.training.trainer import Trainer

    started = []
    monkeypatch.setattr(Trainer, "fit", lambda self, resume=None: started.append(self.task.name) or SimpleNamespace(interrupted=False))
    result = invoke("fit", env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert started == ["imdb"]
    assert "training the default task, imdb" in result.output and "seqtrain fit --task sine" in result.output


def unescaped_values(source: str) -> list[str]:
    """Values put into rich markup unescaped: an f-string argument of print/_say/add_row/Table(title=) whose
    {value} is neither wrapped in escape() nor formatted as a number (a format spec), and a variable passed
    to _say/add_row as it is; none where markup=False. (print(table) prints an object; a title passed on is
    its caller's to escape.)"""
    found = []

    def escaped(node: ast.AST) -> bool:
        return isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "escape"

    def visit(node: ast.AST) -> None:
        if escaped(node):
            return
        if isinstance(node, ast.FormattedValue) and node.format_spec is None and not escaped(node.value):
            found.append(f"line {node.lineno}: {{{ast.unparse(node.value)}}}")
        for child in ast.iter_child_nodes(node):
            visit(child)

    for call in ast.walk(ast.parse(source)):
        if not isinstance(call, ast.Call) or not isinstance(call.func, (ast.Attribute, ast.Name)):
            continue
        called = call.func.attr if isinstance(call.func, ast.Attribute) else call.func.id
        if called not in ("print", "_say", "add_row", "Table") or called == "print" and isinstance(call.func, ast.Name):
            continue  # the builtin print knows no markup
        if any(k.arg == "markup" and getattr(k.value, "value", None) is False for k in call.keywords):
            continue
        for argument in [*call.args, *(k.value for k in call.keywords if k.arg == "title")]:
            if called in ("_say", "add_row") and isinstance(argument, (ast.Name, ast.Attribute, ast.Subscript)):
                found.append(f"line {argument.lineno}: {ast.unparse(argument)}")  # text from a variable: escape it
            visit(argument)
    return found


def test_every_rich_message_escapes_the_values_it_prints():
    assert unescaped_values('console.print(f"saved {path}")') == ["line 1: {path}"]  # the check finds one
    assert unescaped_values("self._say(note)") == ["line 1: note"]
    assert unescaped_values('console.print(f"[b]{escape(str(path))}[/] {count:,}")') == []
    root = Path(__file__).parents[1]
    found = {str(path.relative_to(root)): unescaped_values(path.read_text())
             for folder in ("seqtrain", "cli") for path in sorted((root / folder).rglob("*.py"))}
    assert {path: values for path, values in found.items() if values} == {}
