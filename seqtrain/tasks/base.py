"""The seam between tasks, the trainer and the commands that use a trained model.

A task knows its data, model, loss and metrics, and nothing about the loop.
It is a class registered by name with its settings schema, and instantiated
once per run with that run's config (`task = TaskClass(config)`), so per-run
values live on the task, never on shared objects. The trainer knows batches,
losses and metrics, and never a task's internals.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import nn

from seqtrain.config import Config, Schema
from seqtrain.errors import SeqtrainError


@dataclass
class StepResult:
    """What one batch gives the trainer.

    `loss` is the mean loss to back-propagate. `sums` are additive totals
    (e.g. summed loss, correct predictions) over `count` units (examples or
    tokens), so the trainer can aggregate exactly over an epoch. A sum should
    be a tensor on the step's device (0-dim, or a vector such as a confusion
    matrix, read back as `key:i` entries; seqtrain/sums.py): the trainer adds
    them up there and reads them only when it shows or saves the totals, so a
    step never waits for the device. `count` is a host int. `state` is
    the recurrent state to carry to the next batch (truncated BPTT); the
    trainer detaches it.
    """

    loss: torch.Tensor
    count: int
    sums: dict[str, float | torch.Tensor]
    state: Any = None


@dataclass
class StepContext:
    """What the trainer tells a step: whether it trains, and any scheduled values (e.g. a teacher-forcing ratio)."""

    training: bool
    global_step: int = 0
    epoch: int = 0
    scheduled: dict[str, float] = field(default_factory=dict)


@runtime_checkable
class Loader(Protocol):
    """What the trainer needs of a split's batches: a length, iteration, and a seeded reshuffle per epoch."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Any]: ...

    def set_epoch(self, epoch: int) -> None: ...


class Meta:
    """Base of each family's checkpoint metadata: everything needed to rebuild the model without the data.

    Subclasses are dataclasses of plain types and tensors with a `FORMAT`
    version; `to_dict` is what a checkpoint stores and `from_dict` refuses a
    format it does not know with one line.
    """

    FORMAT: ClassVar[int] = 1

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.FORMAT, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]):
        if raw.get("format") != cls.FORMAT:
            raise SeqtrainError(
                f"checkpoint metadata has format {raw.get('format')}, this seqtrain reads {cls.FORMAT}: "
                "retrain the run with this version"
            )
        return cls(**{f.name: raw[f.name] for f in dataclasses.fields(cls) if f.name in raw})


@dataclass
class TaskData:
    """Loaders for each split and the metadata: everything needed to rebuild the model without the data.

    `schedules` maps a name to a function of the global step; the trainer
    evaluates each one every step, logs it, and hands it to `step` in
    `StepContext.scheduled` (e.g. a teacher-forcing ratio).
    """

    train: Loader
    val: Loader | None
    test: Loader | None
    meta: Meta
    schedules: dict[str, Callable[[int], float]] = field(default_factory=dict)


class Task:
    """Base class for tasks; subclasses register themselves with `@register(name)`."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    schema: ClassVar[Schema] = Schema()
    #: the task's own defaults by setting name, over the schema's
    defaults: ClassVar[dict[str, Any]] = {}
    meta_type: ClassVar[type[Meta]] = Meta
    #: metric used to pick the best checkpoint and for early stopping, and whether higher is better
    monitor: ClassVar[str] = "loss"
    monitor_mode: ClassVar[str] = "min"
    #: the metrics this task reports per epoch (declared for TensorBoard's HParams view)
    metric_names: ClassVar[tuple[str, ...]] = ("loss",)
    #: the metric shown in progress bars beside the loss
    headline: ClassVar[str | None] = None
    #: name prefixes of extra_rows that break the model's own score down (per class, per entity type), not baselines
    breakdown_rows: ClassVar[tuple[str, ...]] = ()
    #: what StepResult.count counts, for the throughput shown in progress bars
    unit: ClassVar[str] = "ex"
    #: the command that uses a trained model of this task ("predict", "generate", "translate", "forecast", "tag"), which
    #: calls the task's method of the same name (see seqtrain/inference.py); None: evaluate only
    ability: ClassVar[str | None] = None

    def __init__(self, config: Config):
        self.config = config
        self.meta: Any = None  # set by prepare() or load_meta(); what build_model reads
        self._per_meta: dict[str, tuple[Any, Any]] = {}

    def per_meta(self, name: str, build: Callable[[], Any]) -> Any:
        """`build()` once per meta, then kept: lookups built from the meta (a vocabulary's index over tens of
        thousands of words takes about 10 ms, more than the model takes for a short text, and a server calls
        predict, tag or translate many times)."""
        kept = self._per_meta.get(name)
        if kept is None or kept[0] is not self.meta:
            kept = self._per_meta[name] = (self.meta, build())
        return kept[1]

    # ------------------------------------------------------------- settings
    @classmethod
    def default_config(cls) -> Config:
        return Config.create(cls.name, cls.schema, cls.defaults)

    def validate(self) -> None:
        """Task-specific checks of the settings, run before any data loads (ranges are checked by Config)."""

    # ----------------------------------------------------------------- data
    def prepare(self, meta: Meta | None = None, quiet: bool = False) -> TaskData:
        """Load the data. With `meta` from a checkpoint, reuse its vocabulary instead of building one."""
        raise NotImplementedError

    def notes(self) -> list[str]:
        """One-line remarks for the start of a run (e.g. pretrained-embedding coverage)."""
        return []

    def load_meta(self, raw: dict[str, Any]) -> Meta:
        self.meta = self.meta_type.from_dict(raw)
        return self.meta

    def default_meta(self) -> Meta:
        """Meta for an untrained model without data (for `seqtrain summary`)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- model
    def build_model(self, meta: Meta) -> nn.Module:
        raise NotImplementedError

    def optimizer(self, model: nn.Module) -> torch.optim.Optimizer | None:
        """An optimizer of the task's own (e.g. one that takes sparse gradients); None: the trainer's --optimizer."""
        return None

    def step(self, model: nn.Module, batch: Any, state: Any, ctx: StepContext) -> StepResult:
        raise NotImplementedError

    def metrics(self, sums: dict[str, float], count: int) -> dict[str, float]:
        """Turn an epoch's summed totals into metrics; by default each sum divided by the count."""
        return {key: value / max(count, 1) for key, value in sums.items()}

    def example_input(self, model: nn.Module) -> tuple:
        """A dummy batch for `seqtrain summary`."""
        return model.example_input()

    def on_epoch_start(self, model: nn.Module, epoch: int) -> None:
        """Hook before epoch `epoch` (1-based) trains, also when a run resumes in or after it (e.g. to freeze layers)."""

    def on_epoch_end(self, model: nn.Module, data: TaskData, log, epoch: int) -> None:
        """Hook for per-epoch extras such as text samples or plots; `log` is the run's TensorBoard logger."""

    def extra_rows(self, model: nn.Module, data: TaskData) -> dict[str, dict[str, dict[str, float]]]:
        """Extra rows for the report, by split: {"val": {"naive": {"mse": ...}}, "test": {...}, "all": {...}}.

        Rows under "all" do not belong to one split (e.g. a uniform baseline). Rows named with a prefix in
        `breakdown_rows` break the model's own score down and are never compared with it as baselines.
        """
        return {}


REGISTRY: dict[str, type[Task]] = {}


def register(name: str) -> Callable[[type[Task]], type[Task]]:
    """Register a task class under `name`; its `schema` and `defaults` are checked here, at import."""

    def decorate(cls: type[Task]) -> type[Task]:
        cls.name = name
        REGISTRY[name] = cls
        cls.default_config()  # a default the schema lacks fails at import, not in a user's run
        return cls

    return decorate
