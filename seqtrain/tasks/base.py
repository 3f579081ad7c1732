"""The seam between tasks and the trainer.

A task knows its data, model, loss and metrics, and nothing about the loop.
The trainer knows batches, losses and metrics, and never a task's internals.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from seqtrain.config import Config


@dataclass
class StepResult:
    """What one batch gives the trainer.

    `loss` is the mean loss to back-propagate. `sums` are additive totals
    (e.g. summed loss, correct predictions) over `count` units (examples or
    tokens), so the trainer can aggregate exactly over an epoch. `state` is
    the recurrent state to carry to the next batch (truncated BPTT); the
    trainer detaches it.
    """

    loss: torch.Tensor
    count: int
    sums: dict[str, float]
    state: Any = None


@dataclass
class StepContext:
    """What the trainer tells a step: whether it trains, and any scheduled values (e.g. a teacher-forcing ratio)."""

    training: bool
    global_step: int = 0
    epoch: int = 0
    scheduled: dict[str, float] = field(default_factory=dict)


@dataclass
class TaskData:
    """Loaders for each split and `meta`: everything needed to rebuild the model without the data.

    Loaders are re-iterable; one with `set_epoch(epoch)` reshuffles from it.
    `meta` goes into checkpoints, so it holds only plain types and tensors.
    `schedules` maps a name to a function of the global step; the trainer
    evaluates each one every step, logs it, and hands it to `step` in
    `StepContext.scheduled` (e.g. a teacher-forcing ratio).
    """

    train: Iterable
    val: Iterable | None
    test: Iterable | None
    meta: dict[str, Any]
    schedules: dict[str, Callable[[int], float]] = field(default_factory=dict)


class Task:
    """Base class for tasks; subclasses register themselves with `@register`."""

    name: str = ""
    description: str = ""
    defaults: dict[str, Any] = {}
    #: metric used to pick the best checkpoint and for early stopping, and whether higher is better
    monitor: str = "loss"
    monitor_mode: str = "min"
    #: the metric shown in progress bars beside the loss
    headline: str | None = None
    #: what StepResult.count counts, for the throughput shown in progress bars
    unit: str = "ex"

    def prepare(self, config: Config, meta: dict[str, Any] | None = None, quiet: bool = False) -> TaskData:
        """Load the data. With `meta` from a checkpoint, reuse its vocabulary instead of building one."""
        raise NotImplementedError

    def build_model(self, config: Config, meta: dict[str, Any]) -> nn.Module:
        raise NotImplementedError

    def step(self, model: nn.Module, batch: Any, state: Any, ctx: StepContext) -> StepResult:
        raise NotImplementedError

    def metrics(self, sums: dict[str, float], count: int) -> dict[str, float]:
        """Turn an epoch's summed totals into metrics; by default each sum divided by the count."""
        return {key: value / max(count, 1) for key, value in sums.items()}

    def example_input(self, model: nn.Module, meta: dict[str, Any]) -> tuple:
        """A dummy batch for `seqtrain summary`."""
        return model.example_input()

    def default_meta(self, config: Config) -> dict[str, Any]:
        """Meta for building an untrained model without data (for `seqtrain summary`)."""
        raise NotImplementedError

    def on_epoch_end(self, model: nn.Module, data: TaskData, log, epoch: int) -> None:
        """Hook for per-epoch extras such as text samples or plots; `log` is the run's TensorBoard logger."""

    def final_metrics(self, model: nn.Module, data: TaskData) -> dict[str, float]:
        """Extra figures for the final report (e.g. baselines)."""
        return {}


REGISTRY: dict[str, Task] = {}


def register(cls: type[Task]) -> type[Task]:
    REGISTRY[cls.name] = cls()
    return cls
