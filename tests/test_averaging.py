"""--ema: the moving average of the weights is what validation scores, best.pt keeps and the test reads."""

import pytest
import torch
from torch import nn

import seqtrain

from seqtrain.tasks.imdb import ImdbTask
from seqtrain.training.averaging import WeightAverage
from seqtrain.training.checkpoint import load_checkpoint
from seqtrain.training.runs import latest_run
from seqtrain.training.trainer import Trainer

from test_trainer import CrashInSecondEpoch, small_config


def test_the_average_starts_at_the_weights_and_warms_its_decay_up():
    model = nn.Linear(2, 1, bias=False)
    average = WeightAverage(0.99)
    with torch.no_grad():
        model.weight.fill_(1.0)
        average.update(model)  # the first update copies
        model.weight.fill_(12.0)
        average.update(model)  # decay min(0.99, 2/11): 2/11 * 1 + 9/11 * 12 = 10
    torch.testing.assert_close(average.shadow[0], torch.full((1, 2), 10.0))
    for _ in range(2000):
        average.update(model)
    torch.testing.assert_close(average.shadow[0], torch.full((1, 2), 12.0))


def test_applied_swaps_the_average_in_and_the_weights_back_even_on_an_error():
    model = nn.Linear(3, 2)
    average = WeightAverage(0.5)
    average.update(model)
    own = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    trained = [p.detach().clone() for p in model.parameters()]
    with average.applied(model):
        for p, o in zip(model.parameters(), own):
            assert torch.equal(p, o)
    with pytest.raises(RuntimeError), average.applied(model):
        raise RuntimeError("during validation")
    for p, t in zip(model.parameters(), trained):
        assert torch.equal(p, t)


def test_best_checkpoint_holds_the_average_and_last_the_trained_weights(imdb_dir, tmp_path):
    config = small_config(imdb_dir, tmp_path, ema=0.9)
    run = Trainer(ImdbTask(config)).fit()
    best, last = load_checkpoint(run.run_dir / "best.pt"), load_checkpoint(run.run_dir / "last.pt")
    task = ImdbTask(config)
    data = task.prepare(task.load_meta(best["meta"]))
    model = task.build_model(data.meta)
    averaged = dict(zip([name for name, _ in model.named_parameters()], last["average"]["shadow"]))
    assert last["average"]["updates"] == last["state"]["global_step"]
    assert any(not torch.equal(last["model"][name], value) for name, value in averaged.items())  # it averages
    for name, value in zip(averaged, best["average"]["shadow"]):  # best.pt: the average as it was at that epoch
        assert torch.equal(best["model"][name], value)
    # the test figure is the saved average's: scoring best.pt again gives it
    model.load_state_dict(best["model"])
    again = Trainer(task).evaluate(model, data.test, torch.device("cpu"))
    assert again["accuracy"] == pytest.approx(run.test["accuracy"])


def test_resume_carries_the_average_on_and_reproduces_an_uninterrupted_run(imdb_dir, tmp_path):
    straight = Trainer(ImdbTask(small_config(imdb_dir, tmp_path / "a", ema=0.9))).fit()
    crashed = small_config(imdb_dir, tmp_path / "b", ema=0.9)
    with pytest.raises(RuntimeError, match="simulated crash"):
        Trainer(CrashInSecondEpoch(crashed)).fit()
    resumed = Trainer(ImdbTask(crashed)).fit(resume=latest_run(tmp_path / "b" / "runs"))
    a = load_checkpoint(straight.run_dir / "last.pt")
    b = load_checkpoint(resumed.run_dir / "last.pt")
    assert b["average"]["updates"] == a["average"]["updates"] > 0
    for x, y in zip(a["average"]["shadow"], b["average"]["shadow"]):
        torch.testing.assert_close(x, y)
    assert resumed.test["accuracy"] == pytest.approx(straight.test["accuracy"])


def test_any_task_can_average_and_the_cli_takes_the_flag(tmp_path):
    """A forecaster through the CLI: its best.pt is the average its validation scored, and `evaluate` reads it."""
    from test_cli import invoke

    logdir = tmp_path / "runs"
    result = invoke("fit", "--task", "sine", "--logdir", logdir, "--epochs", "2", "--max-steps", "30", "--hidden", "8",
                    "--ema", "0.9")
    assert result.exit_code == 0, result.output
    run = latest_run(logdir)
    best = load_checkpoint(run / "best.pt")
    assert best["config"]["train"]["ema"] == 0.9 and best["average"]["updates"] > 0
    loaded = seqtrain.load(run, device="cpu").trained.model  # what evaluate, predict and export read
    for value, saved in zip(loaded.parameters(), best["average"]["shadow"], strict=True):
        assert torch.equal(value, saved)
    bad = invoke("fit", "--task", "sine", "--logdir", logdir, "--ema", "1")
    assert bad.exit_code != 0 and "--ema" in bad.output and "Traceback" not in bad.output
