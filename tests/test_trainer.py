"""Checkpoints, resume and interruption, on the small IMDB-format corpus."""

import os
import signal

import pytest
import torch

from seqtrain.config import Config
from seqtrain.tasks import get_task
from seqtrain.tasks.imdb import ImdbTask
from seqtrain.training.checkpoint import load_checkpoint, save_checkpoint
from seqtrain.training.trainer import Trainer


def small_config(imdb_dir, tmp_path, **train) -> Config:
    config = Config(task="imdb")
    config.update(get_task("imdb").defaults)
    config.update({"data.data_dir": str(imdb_dir), "model.embed_dim": 16, "model.hidden": 8, "train.batch_size": 32,
                   "train.logdir": str(tmp_path / "runs"), "train.epochs": 2})
    config.update({f"train.{k}": v for k, v in train.items()})
    return config


def test_checkpoint_round_trip_is_atomic(tmp_path):
    payload = {"model": {"w": torch.randn(3, 3)}, "epoch": 2, "meta": {"vocab": ["<pad>", "<unk>", "a"]}}
    save_checkpoint(tmp_path / "c.pt", payload)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert torch.equal(loaded["model"]["w"], payload["model"]["w"]) and loaded["meta"] == payload["meta"]


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_resume_reproduces_an_uninterrupted_run(imdb_dir, tmp_path, schedule):
    straight = Trainer(get_task("imdb"), small_config(imdb_dir, tmp_path / "a", lr_schedule=schedule)).fit()
    crashed = small_config(imdb_dir, tmp_path / "b", lr_schedule=schedule)
    with pytest.raises(RuntimeError, match="simulated crash"):
        Trainer(CrashInSecondEpoch(), crashed).fit()
    run = (tmp_path / "b" / "runs" / "latest").resolve()
    assert load_checkpoint(run / "last.pt")["epoch"] == 1
    resumed = Trainer(get_task("imdb"), crashed).fit(resume=run)
    a = load_checkpoint(straight.run_dir / "last.pt")
    b = load_checkpoint(resumed.run_dir / "last.pt")
    assert b["epoch"] == 2 and b["global_step"] == a["global_step"]
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key])


class CrashInSecondEpoch(ImdbTask):
    """Dies at the end of the second epoch, before its checkpoint: the last one on disk is epoch 1's."""

    name = "imdb"

    def on_epoch_end(self, model, data, log, epoch):
        if epoch == 2:
            raise RuntimeError("simulated crash")


def test_cosine_schedule_decays_to_zero(imdb_dir, tmp_path):
    result = Trainer(get_task("imdb"), small_config(imdb_dir, tmp_path, lr_schedule="cosine")).fit()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(result.run_dir))
    events.Reload()
    lrs = [e.value for e in events.Scalars("train/lr")]
    assert lrs[0] < 2e-3 and lrs[-1] == pytest.approx(0.0, abs=1e-9)
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


class InterruptingTask(ImdbTask):
    """Sends Ctrl-C to itself on the third training step."""

    name = "imdb"

    def step(self, model, batch, state, ctx):
        if ctx.training and ctx.global_step == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return super().step(model, batch, state, ctx)


def test_ctrl_c_stops_after_the_step_saves_and_can_resume(imdb_dir, tmp_path):
    config = small_config(imdb_dir, tmp_path)
    result = Trainer(InterruptingTask(), config).fit()
    assert result.interrupted
    saved = load_checkpoint(result.run_dir / "last.pt")
    assert saved["epoch"] == 0 and saved["global_step"] == 3
    assert not (result.run_dir / "metrics.json").exists()
    finished = Trainer(get_task("imdb"), config).fit(resume=result.run_dir)
    assert not finished.interrupted and (result.run_dir / "metrics.json").exists()
