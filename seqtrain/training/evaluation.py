"""Loading a trained model back from its checkpoint, and scoring it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn

from seqtrain.config import Config
from seqtrain.errors import SeqtrainError
from seqtrain.tasks import get_task
from seqtrain.training.checkpoint import load_checkpoint
from seqtrain.training.device import resolve_device
from seqtrain.training.trainer import Trainer


def load_model(checkpoint: Path, device: str = "auto") -> tuple[nn.Module, Config, dict[str, Any], torch.device]:
    """Rebuild the model from the checkpoint alone (config + meta + weights); no data needed."""
    blob = load_checkpoint(checkpoint)
    config = Config.from_dict(blob["config"])
    task = get_task(config.task)
    dev = resolve_device(device)
    model = task.build_model(config, blob["meta"])
    model.load_state_dict(blob["model"])
    return model.to(dev).eval(), config, blob["meta"], dev


def evaluate_checkpoint(
    checkpoint: Path, split: str, device: str, data_dir: str | None, console: Console | None
) -> tuple[dict[str, dict[str, float]], Config]:
    """Rows for the report: the model's metrics on `split`, then the task's extra rows for that split
    (e.g. the forecasting baselines 'naive test', 'linear test')."""
    model, config, meta, dev = load_model(checkpoint, device)
    if data_dir is not None:
        config.data.data_dir = data_dir
    task = get_task(config.task)
    data = task.prepare(config, meta, quiet=console is None)
    loader = data.test if split == "test" else data.val
    if loader is None:
        raise SeqtrainError(f"task '{config.task}' has no {split} split with these settings")
    rows = {split: Trainer(task, config, console).evaluate(model, loader, dev, split)}
    extra = task.final_metrics(model, data)
    rows.update({name: values for name, values in extra.items() if isinstance(values, dict) and name.endswith(f" {split}")})
    return rows, config
