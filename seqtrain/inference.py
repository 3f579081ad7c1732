"""Using a trained model: load it from its checkpoint alone, score it, or hand it to the command its task offers.

Each task declares one `ability` (predict, generate, translate, forecast, tag)
and implements the method of that name; a command asks `require` for it, so
the CLI never inspects task types. An ability method takes the model first,
and the model's device as a parameter named `device` if it needs one; the
Python API's `Model` offers it as `model.<ability>(...)` with those two filled
in, so a new ability needs no change there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from torch import nn

from seqtrain.config import Config, SourceData
from seqtrain.data.sources import given_sources
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
    "tag": 'seqtrain tag {run} "text"',
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
            method = f"model.{self.task.ability or 'evaluate'}(...)"
            raise SeqtrainError(
                f"{self.checkpoint} is a '{self.config.task}' model, which does not {ability}; use `{other}` "
                f"(in Python: {method})"
            )
        return self.task


def check_threads(threads: int) -> None:
    """Refuse a --threads count below 0 (0 chooses from the model)."""
    if threads < 0:
        raise SeqtrainError(f"--threads must be 0 (chosen from the model) or positive, not {threads}")


def load_trained(checkpoint: Path, device: str = "auto", threads: int | None = None) -> Trained:
    """Rebuild the model from the checkpoint alone (config + metadata + weights); no data needed.

    `threads` (the commands' --threads; 0 chooses from the model as a run does) sets torch's CPU threads; None leaves them.
    """
    if threads is not None:
        check_threads(threads)
    blob = load_checkpoint(checkpoint)
    task = make_task(config_from_dict(blob["config"]))
    dev = resolve_device(device)
    model = task.build_model(task.load_meta(blob["meta"]))
    model.load_state_dict(blob["model"])
    if threads is not None:
        apply_threads(threads, model, task.config.train.batch_size, dev)
    return Trained(task, model.to(dev).eval(), dev, checkpoint)


def check_recorded_sources(data: SourceData, config: Path) -> None:
    """One line naming the run's config, not a flag the user never typed, where the data it was trained on moved."""
    for flag, value in given_sources(data):
        if not Path(value).expanduser().exists():
            key = flag.removeprefix("--").replace("-", "_")
            raise SeqtrainError(f"{value} ({key} in {config}) does not exist: pass --data with where that data is now")


def evaluate_trained(
    trained: Trained, split: str, data: str | None, console: Console | None
) -> dict[str, dict[str, float]]:
    """Rows for the report: the model's metrics on `split`, then the task's extra rows for that split
    (e.g. the forecasting baselines 'naive test', 'linear test'). `data` points a copy of the run's config
    at the data's new place; the loaded model's own config is left as it is."""
    if split not in ("test", "val"):
        raise SeqtrainError(f"--split must be test or val, not '{split}'")
    task = trained.task
    if data is not None:
        if not isinstance(task.config.data, SourceData):
            raise SeqtrainError(f"task '{task.name}' makes its own data: drop --data")
        config = config_from_dict(task.config.to_dict())
        config.data.data, config.data.data_dir = data, None
        task = make_task(config)
        task.meta = trained.task.meta
    elif isinstance(task.config.data, SourceData):
        check_recorded_sources(task.config.data, trained.checkpoint.parent / "config.toml")
    loaded = task.prepare(task.meta, quiet=console is None)
    loader = loaded.test if split == "test" else loaded.val
    if loader is None:
        raise SeqtrainError(f"task '{task.name}' has no {split} split with these settings")
    rows = {split: Trainer(task, console).evaluate(trained.model, loader, trained.device, split)}
    extra = task.extra_rows(trained.model, loaded)
    for group in (split, "all"):
        rows.update({f"{name} {split}" if group == split else name: values for name, values in extra.get(group, {}).items()})
    return rows
