"""Faults of the environment and of the user: one line each, and nothing lost."""

import pytest
from typer.testing import CliRunner

import seqtrain.training.trainer as trainer_module
from seqtrain_cli.main import app

runner = CliRunner()
SINE = ["fit", "--task", "sine", "--epochs", "2", "--max-steps", "4", "--hidden", "8", "--layers", "1", "--batch-size", "16"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_a_full_disk_during_a_save_is_one_line_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    real = trainer_module.save_checkpoint
    calls = []

    def fill_up(path, payload):
        calls.append(path.name)
        if len(calls) == 3:  # epoch 2's best.pt: the disk is full
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 128 vs 64")
        real(path, payload)

    monkeypatch.setattr(trainer_module, "save_checkpoint", fill_up)
    result = invoke(*SINE, "--logdir", tmp_path)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "cannot write" in result.output and "MiB free there" in result.output and "--resume" in result.output
    run = next(p for p in tmp_path.iterdir() if p.is_dir())
    assert sorted(p.name for p in run.iterdir() if p.suffix == ".pt") == ["best.pt", "last.pt"]  # epoch 1's
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def test_resume_falls_back_to_the_newest_loadable_checkpoint(tmp_path):
    assert invoke(*SINE, "--logdir", tmp_path).exit_code == 0
    run = next(p for p in tmp_path.iterdir() if p.is_dir())
    (run / "last.pt").write_bytes(b"damaged")
    result = invoke("fit", "--resume", run, "--epochs", "3")
    assert result.exit_code == 0, result.output
    assert "resuming from best.pt" in result.output


def test_an_unwritable_logdir_is_one_line_before_any_data_work(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = invoke(*SINE, "--logdir", blocker / "runs")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "SEQTRAIN_DEBUG=1" in result.output and str(blocker) in result.output


@pytest.mark.parametrize("temperature", ["inf", "nan", "0"])
def test_temperatures_that_do_nothing_are_refused(tmp_path, temperature):
    from seqtrain.errors import SeqtrainError
    from seqtrain.generation import check_sampling

    with pytest.raises(SeqtrainError, match="--temperature must be > 0"):
        check_sampling(float(temperature), None, 10)


def test_inference_commands_take_threads(tmp_path):
    assert invoke(*SINE, "--logdir", tmp_path).exit_code == 0
    csv = tmp_path / "recent.csv"
    csv.write_text("value\n" + "\n".join(str(i / 100) for i in range(60)) + "\n")
    result = invoke("forecast", "latest", "--logdir", tmp_path, "--data", csv, "--threads", "1")
    assert result.exit_code == 0, result.output
    assert invoke("evaluate", "latest", "--logdir", tmp_path, "--threads", "-1").exit_code == 2
