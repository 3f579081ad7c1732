"""The `latest` pointer: a file TensorBoard does not walk, written safely by concurrent runs, usable as a run name."""

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.io_wrapper import GetLogdirSubdirectories
from typer.testing import CliRunner

from seqtrain.errors import SeqtrainError
from seqtrain.training.checkpoint import LAST, load_checkpoint
from seqtrain.training.runs import LATEST, latest_run, point_latest, resolve_checkpoint
from seqtrain_cli.main import app

runner = CliRunner()
# a seq2seq task that makes its own data; a forecasting task would take the once-per-process matplotlib note
QUICK = ["--task", "dates", "--num-pairs", "300", "--epochs", "1", "--max-steps", "3", "--hidden", "8", "--batch-size", "32",
         "--quiet", "--device", "cpu"]


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def event_files_seen_by_a_walk_that_follows_links(logdir: Path) -> list[str]:
    return sorted(
        os.path.relpath(os.path.realpath(os.path.join(folder, name)), logdir)
        for folder, _, names in os.walk(logdir, followlinks=True)
        for name in names
        if "tfevents" in name
    )


def test_runs_are_seen_once_and_latest_names_the_newest(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # so that the default --logdir `runs` is this test's
    invoke("fit", *QUICK)
    first = latest_run("runs")
    invoke("fit", *QUICK)
    newest = latest_run("runs")
    assert first != newest and newest.parent == Path("runs") and (newest / "best.pt").is_file()

    assert not [path for path in Path("runs").rglob("*") if path.is_symlink()]
    events = event_files_seen_by_a_walk_that_follows_links(tmp_path / "runs")
    assert len(events) == len(set(events)) == 2  # one per run; a `latest` symlink made the newest appear twice
    assert sorted(Path(d).name for d in GetLogdirSubdirectories(str(tmp_path / "runs"))) == sorted([first.name, newest.name])

    # `latest` as a run name, and `runs/latest` as a path, everywhere a run is named
    assert resolve_checkpoint("latest", "runs") == newest / "best.pt"
    assert resolve_checkpoint("runs/latest/best.pt") == newest / "best.pt"
    assert resolve_checkpoint(str(tmp_path / "runs" / "latest"), prefer=LAST) == (tmp_path / newest / LAST)
    assert "token_accuracy" in invoke("evaluate", "latest").output
    assert "token_accuracy" in invoke("evaluate", "runs/latest").output
    assert invoke("translate", "latest", "March 3, 2009").output == invoke("translate", "March 3, 2009").output
    for epochs, resume in enumerate(("runs/latest", "latest"), start=2):
        invoke("fit", "--resume", resume, "--epochs", epochs, "--quiet")
        assert load_checkpoint(newest / LAST)["state"]["epoch"] == epochs  # continued in place: no new run
        assert latest_run("runs") == newest


def test_a_logdir_with_the_old_symlink_keeps_resolving_and_loses_it_on_the_next_run(tmp_path):
    logdir = tmp_path / "runs"
    invoke("fit", "--logdir", logdir, *QUICK)
    run = latest_run(logdir)
    (logdir / LATEST).unlink()
    os.symlink(run.name, logdir / LATEST)  # what earlier versions wrote
    assert resolve_checkpoint("latest", logdir) == logdir / LATEST / "best.pt"
    assert resolve_checkpoint("latest", logdir).resolve() == (run / "best.pt").resolve()
    invoke("fit", "--logdir", logdir, *QUICK)
    assert not (logdir / LATEST).is_symlink() and latest_run(logdir) != run


def test_a_damaged_pointer_is_a_one_line_error(tmp_path):
    (tmp_path / LATEST).write_text("../elsewhere\n")
    with pytest.raises(SeqtrainError, match="should hold the name of a run folder"):
        resolve_checkpoint("latest", tmp_path)


WRITER = """
import sys
from pathlib import Path
from seqtrain.training.runs import point_latest
run = Path(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()  # start together with the other writer
for _ in range(int(sys.argv[2])):
    point_latest(run)
"""


def test_runs_started_at_once_never_trip_over_each_other(tmp_path):
    """Earlier, one fixed temp name (`.latest.tmp`) made concurrent runs fail with FileNotFoundError."""
    logdir = tmp_path / "runs"
    runs = [logdir / "a-run", logdir / "b-run"]
    for run in runs:
        run.mkdir(parents=True)
    point_latest(runs[0])
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(run), "1000"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for run in runs
    ]
    assert [writer.stdout.readline() for writer in writers] == ["ready\n"] * 2
    for writer in writers:
        writer.stdin.write("go\n")
        writer.stdin.flush()
    seen = set()
    while any(writer.poll() is None for writer in writers):  # a reader never sees a half-written name
        seen.add(latest_run(logdir).name)
    errors = [writer.communicate()[1] for writer in writers]
    assert [writer.returncode for writer in writers] == [0, 0], errors
    assert seen <= {"a-run", "b-run"}
    assert sorted(path.name for path in logdir.iterdir()) == ["a-run", "b-run", LATEST]  # no temp file left


def test_threads_in_one_process_too(tmp_path):
    runs = [tmp_path / f"run-{i}" for i in range(4)]
    for run in runs:
        run.mkdir()
    failures = []

    def write(run):
        try:
            for _ in range(300):
                point_latest(run)
        except OSError as exc:
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(run,)) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == [] and latest_run(tmp_path) in runs
