"""Using a trained model: load it from its checkpoint alone, score it, or hand it to the command its task offers.

Each task declares one `ability` (predict, generate, translate, forecast)
and implements the method of that name; a command asks `require` for it, so
the CLI never inspects task types.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from torch import nn

from seqtrain.config import Config, SourceData
from seqtrain.errors import SeqtrainError
from seqtrain.tasks import config_from_dict, make_task
from seqtrain.tasks.base import Task
from seqtrain.training.checkpoint import load_checkpoint
from seqtrain.training.device import apply_threads, resolve_device
from seqtrain.training.trainer import Trainer

#: what each ability's command is called, for the message that points a user to the right one
COMMANDS = {
    "predict": 'seqtrain predict {run} "text"',
    "generate": 'seqtrain generate {run} --prime "..."',
    "translate": 'seqtrain translate {run} "text"',
    "forecast": "seqtrain forecast {run} --data FILE",
    "transcribe": "seqtrain transcribe {run} FILE.wav",
}


@dataclass
class Trained:
    """A task with its checkpoint's metadata loaded, and the model rebuilt on a device, in eval mode."""

    task: Task
    model: nn.Module
    device: torch.device
    checkpoint: Path

    @property
    def config(self) -> Config:
        return self.task.config

    def require(self, ability: str) -> Task:
        """The task, if its models do `ability`; else one line naming the command that fits this run."""
        if self.task.ability != ability:
            other = COMMANDS.get(self.task.ability or "", "seqtrain evaluate {run}").format(run=self.checkpoint.parent)
            raise SeqtrainError(
                f"{self.checkpoint} is a '{self.config.task}' model, which does not {ability}; use `{other}`"
            )
        return self.task


def load_trained(checkpoint: Path, device: str = "auto", threads: int | None = None) -> Trained:
    """Rebuild the model from the checkpoint alone (config + metadata + weights); no data needed.

    `threads` (the commands' --threads; 0 chooses from the model as a run does) sets torch's CPU threads; None leaves them.
    """
    blob = load_checkpoint(checkpoint)
    task = make_task(config_from_dict(blob["config"]))
    dev = resolve_device(device)
    model = task.build_model(task.load_meta(blob["meta"]))
    model.load_state_dict(blob["model"])
    if threads is not None:
        apply_threads(threads, model, task.config.train.batch_size, dev)
    return Trained(task, model.to(dev).eval(), dev, checkpoint)


def evaluate_checkpoint(
    checkpoint: Path, split: str, device: str, data: str | None, console: Console | None, threads: int | None = None
) -> tuple[dict[str, dict[str, float]], Config]:
    """Rows for the report: the model's metrics on `split`, then the task's extra rows for that split
    (e.g. the forecasting baselines 'naive test', 'linear test')."""
    trained = load_trained(checkpoint, device, threads)
    task = trained.task
    if data is not None:
        if not isinstance(task.config.data, SourceData):
            raise SeqtrainError(f"task '{task.name}' makes its own data: drop --data")
        task.config.data.data, task.config.data.data_dir = data, None
    loaded = task.prepare(task.meta, quiet=console is None)
    loader = loaded.test if split == "test" else loaded.val
    if loader is None:
        raise SeqtrainError(f"task '{task.name}' has no {split} split with these settings")
    rows = {split: Trainer(task, console).evaluate(trained.model, loader, trained.device, split)}
    extra = task.extra_rows(trained.model, loaded)
    for group in (split, "all"):
        rows.update({f"{name} {split}" if group == split else name: values for name, values in extra.get(group, {}).items()})
    return rows, task.config
