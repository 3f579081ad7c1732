"""`seqtrain tune`: spaces, a tiny study end to end, pruning, resuming after kill -9, and two workers."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

optuna = pytest.importorskip("optuna")

from seqtrain import tuning  # noqa: E402
from seqtrain.errors import SeqtrainError  # noqa: E402
from seqtrain.tasks import task_class  # noqa: E402
from test_text_task import invoke  # noqa: E402

QUICK = ["--epochs", "2", "--max-steps", "3", "--batch-size", "32", "--threads", "1"]
SPACE = ["--param", "lr=log:1e-3:1e-2", "--param", "hidden=int:4:12", "--param", "cell=choice:gru,lstm"]
FIELDS = task_class("sine").schema.fields()


def test_params_parse_with_their_types():
    assert tuning.parse_param("lr=log:1e-4:1e-2", FIELDS) == tuning.Param("lr", "log", 1e-4, 1e-2)
    assert tuning.parse_param("hidden=int:32:256", FIELDS).spec() == "int:32:256"
    assert tuning.parse_param("cell=choice:lstm,gru", FIELDS).choices == ("lstm", "gru")
    assert tuning.parse_param("layer-norm=choice:true,false", FIELDS).choices == (True, False)
    text = task_class("text").schema.fields()
    assert tuning.parse_param("batch_size=choice:16,32", text).choices == (16, 32)


@pytest.mark.parametrize(
    "text, message",
    [
        ("lr", "write NAME=KIND"),
        ("speed=log:1:2", "'speed' is not a setting"),
        ("lr=uniform:1:2", "kind must be one of log, float, int, choice"),
        ("lr=log:0:1", "LOW > 0 for log"),
        ("lr=log:1e-2:1e-4", "need LOW < HIGH"),
        ("hidden=float:1:9", "whole number; use int"),
        ("lr=int:1:3", "real number"),
        ("cell=choice:lstm,transformer", "'transformer' is not one of rnn, lstm, gru"),
        ("cell=log:1:2", "not a number setting"),
        ("hidden=int:a:b", "must be numbers"),
    ],
)
def test_bad_params_are_one_line_errors(text, message):
    with pytest.raises(SeqtrainError, match=message):
        tuning.parse_param(text, FIELDS)


def test_a_space_file_replaces_the_default_space(tmp_path):
    path = tmp_path / "space.toml"
    path.write_text('[space]\nlr = "log:1e-3:1e-2"\nhidden = "int:8:16"\n')
    space = tuning.build_space("sine", ["cell=choice:gru"], path)
    assert sorted(space) == ["cell", "hidden", "lr"]
    path.write_text("lr = 0.1\n")
    with pytest.raises(SeqtrainError, match='write lr = "log:1e-4:1e-2"'):
        tuning.build_space("sine", [], path)
    assert set(tuning.default_space("imdb")) >= {"lr", "hidden", "dropout"}
    assert "transform" in tuning.default_space("csv-series")


def test_a_tiny_study_ranks_its_trials_and_its_best_config_reproduces(tmp_path):
    logdir = tmp_path / "runs"
    result = invoke("tune", "--task", "sine", "--trials", "4", "--study", "tiny", "--logdir", logdir, "--pruner", "none",
                    *SPACE, *QUICK)
    assert result.exit_code == 0, result.output
    folder = logdir / "tiny"
    ranking = (folder / "trials.md").read_text().splitlines()
    assert len(ranking) == 2 + 4 and ranking[2].startswith("| 1 |")
    values = [float(line.split("|")[4]) for line in ranking[2:]]
    assert values == sorted(values)  # mse: lower first
    best = json.loads((folder / "best.json").read_text())
    assert best["val"] == pytest.approx(values[0], abs=1e-4) and "mse" in best["test"]["test"]
    runs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink())
    assert len(runs) == 4 and all((p / "best.pt").exists() for p in runs)
    assert all("test" not in json.loads((p / "metrics.json").read_text()) or
               not json.loads((p / "metrics.json").read_text())["test"] for p in runs)  # trials never score test

    again = invoke("fit", "--config", folder / "config.toml", "--logdir", tmp_path / "again", "--quiet")
    assert again.exit_code == 0, again.output
    rerun = next(p for p in (tmp_path / "again").iterdir() if p.is_dir() and not p.is_symlink())
    assert json.loads((rerun / "metrics.json").read_text())["best_val"]["mse"] == pytest.approx(best["val"], rel=1e-5)

    shown = invoke("tune", "--show", "tiny", "--logdir", logdir)
    assert shown.exit_code == 0 and "study tiny" in shown.output
    again = invoke("tune", "--task", "sine", "--trials", "1", "--study", "tiny", "--logdir", logdir, *QUICK)
    assert again.exit_code == 2 and "--resume tiny" in again.output


def test_a_forced_pruner_prunes_after_the_first_report(tmp_path):
    spec = tuning.StudySpec("sine", {"epochs": 3, "max_steps": 2, "threads": 1}, {"hidden": "int:4:8"}, 2)
    study = tuning.create_study("pruned", str(tmp_path), spec, "minimize", None, "median")
    tuning.run_trials(study, str(tmp_path), None, None, pruner=optuna.pruners.ThresholdPruner(upper=0.0))
    trials = study.get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.PRUNED] * 2
    assert all(list(t.intermediate_values) == [1] for t in trials)  # stopped after epoch 1 of 3
    assert all((tmp_path / "pruned" / t.user_attrs["run"] / "best.pt").exists() for t in trials)


def tune_process(logdir, *args):
    command = [sys.executable, "-m", "seqtrain", "tune", "--task", "sine", "--logdir", str(logdir), "--quiet", *args]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def complete(study):
    return [t for t in study.get_trials() if t.state == optuna.trial.TrialState.COMPLETE]


@pytest.mark.timeout(600)  # two processes start torch: slow on a loaded machine
def test_resume_after_kill_9_loses_no_finished_trial(tmp_path):
    proc = tune_process(tmp_path, "--trials", "3", "--study", "killed", "--pruner", "none", *SPACE,
                        "--epochs", "3", "--max-steps", "2", "--threads", "1")
    deadline = time.time() + 400
    while time.time() < deadline:
        try:
            study = tuning.load_study("killed", str(tmp_path), None)
        except SeqtrainError:  # not created yet
            study = None
        if study is not None and complete(study):  # one finished; kill -9 whatever comes next
            break
        time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = {t.number: t.value for t in complete(tuning.load_study("killed", str(tmp_path), None))}
    assert kept
    result = invoke("tune", "--resume", "killed", "--logdir", tmp_path)
    assert result.exit_code == 0, result.output
    study = tuning.load_study("killed", str(tmp_path), None)
    after = {t.number: t.value for t in complete(study)}
    assert len(after) >= 3 and all(after[n] == v for n, v in kept.items())


@pytest.mark.timeout(600)
def test_two_workers_never_run_one_trial_twice(tmp_path):
    result = invoke("tune", "--task", "sine", "--trials", "4", "--study", "pair", "--workers", "2", "--logdir", tmp_path,
                    "--pruner", "none", *SPACE, *QUICK)
    assert result.exit_code == 0, result.output
    trials = tuning.load_study("pair", str(tmp_path), None).get_trials()
    finished = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(finished) >= 4
    runs = [t.user_attrs["run"] for t in finished]
    assert len(set(runs)) == len(runs) and len({t.number for t in trials}) == len(trials)
    folders = [p for p in (tmp_path / "pair").iterdir() if p.is_dir() and not p.is_symlink()]
    assert len(folders) == len(trials)  # one run folder per trial, none shared
