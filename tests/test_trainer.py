"""Checkpoints, resume and interruption, on the small IMDB-format corpus."""

import os
import signal

import pytest
import torch

from seqtrain.config import Config
from seqtrain.tasks.imdb import ImdbTask
from seqtrain.training.checkpoint import FORMAT, MARKER, load_checkpoint, save_checkpoint
from seqtrain.training.runs import latest_run
from seqtrain.training.trainer import Trainer

from conftest import make


def small_config(imdb_dir, tmp_path, **train) -> Config:
    settings = {"data": str(imdb_dir), "embed_dim": 16, "hidden": 8, "batch_size": 32, "logdir": str(tmp_path / "runs"),
                "epochs": 2}
    return make("imdb", **settings, **train).config


def test_checkpoint_round_trip_is_atomic(tmp_path):
    payload = {"marker": MARKER, "format": FORMAT, "model": {"w": torch.randn(3, 3)}, "meta": {"vocab": ["<pad>", "a"]}}
    save_checkpoint(tmp_path / "c.pt", payload)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert torch.equal(loaded["model"]["w"], payload["model"]["w"]) and loaded["meta"] == payload["meta"]


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_resume_reproduces_an_uninterrupted_run(imdb_dir, tmp_path, schedule):
    straight = Trainer(ImdbTask(small_config(imdb_dir, tmp_path / "a", lr_schedule=schedule))).fit()
    crashed = small_config(imdb_dir, tmp_path / "b", lr_schedule=schedule)
    with pytest.raises(RuntimeError, match="simulated crash"):
        Trainer(CrashInSecondEpoch(crashed)).fit()
    run = latest_run(tmp_path / "b" / "runs")
    assert load_checkpoint(run / "last.pt")["state"]["epoch"] == 1
    resumed = Trainer(ImdbTask(crashed)).fit(resume=run)
    a = load_checkpoint(straight.run_dir / "last.pt")
    b = load_checkpoint(resumed.run_dir / "last.pt")
    assert b["state"]["epoch"] == 2 and b["state"]["global_step"] == a["state"]["global_step"]
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key])


class CrashInSecondEpoch(ImdbTask):
    """Dies at the end of the second epoch, before its checkpoint: the last one on disk is epoch 1's."""

    def on_epoch_end(self, model, data, log, epoch):
        if epoch == 2:
            raise RuntimeError("simulated crash")


def test_cosine_schedule_decays_to_zero(imdb_dir, tmp_path):
    result = Trainer(ImdbTask(small_config(imdb_dir, tmp_path, lr_schedule="cosine"))).fit()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(result.run_dir))
    events.Reload()
    lrs = [e.value for e in events.Scalars("train/lr")]
    assert lrs[0] < 2e-3 and lrs[-1] == pytest.approx(0.0, abs=1e-9)
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


class InterruptingTask(ImdbTask):
    """Sends Ctrl-C to itself on the third training step."""

    def step(self, model, batch, state, ctx):
        if ctx.training and ctx.global_step == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return super().step(model, batch, state, ctx)


def test_ctrl_c_stops_after_the_step_saves_and_can_resume(imdb_dir, tmp_path):
    config = small_config(imdb_dir, tmp_path)
    result = Trainer(InterruptingTask(config)).fit()
    assert result.interrupted
    saved = load_checkpoint(result.run_dir / "last.pt")
    assert saved["state"]["epoch"] == 0 and saved["state"]["global_step"] == 3
    assert not (result.run_dir / "metrics.json").exists()
    finished = Trainer(ImdbTask(config)).fit(resume=result.run_dir)
    assert not finished.interrupted and (result.run_dir / "metrics.json").exists()
