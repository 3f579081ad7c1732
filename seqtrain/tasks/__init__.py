"""Tasks, found by name through a small registry; configs are read through it, since it knows each schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import importlib
import pkgutil

from seqtrain.config import Config, read_toml
from seqtrain.data.sources import resolve_locations
from seqtrain.errors import SeqtrainError
from seqtrain.models.size import check_model_size
from seqtrain.tasks.base import REGISTRY, Task

# Every module of this package registers its tasks on import: a new task is a new file here, nothing else.
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


def task_class(name: str) -> type[Task]:
    try:
        return REGISTRY[name]
    except KeyError:
        raise SeqtrainError(f"unknown task '{name}'; choose one of {', '.join(sorted(REGISTRY))} (see `seqtrain tasks`)")


def build_config(name: str, overrides: dict[str, Any] | None = None) -> Config:
    """The schema's defaults, then the task's defaults, then `overrides` (settings by name)."""
    from seqtrain.training.budget import keep_typed_epochs

    config = task_class(name).default_config()
    config.update(overrides or {})
    keep_typed_epochs(config, overrides or {})
    return config


def config_from_dict(raw: dict[str, Any], source: str | Path | None = None) -> Config:
    """A config as `Config.to_dict` (a checkpoint) or a config.toml wrote it; `source`: the file it was read from."""
    return Config.from_dict(raw, task_class(raw["task"]).schema, source)


def read_config(path: str | Path) -> Config:
    return config_from_dict(read_toml(Path(path)), path)


def make_task(config: Config) -> Task:
    """A fresh task object for one run, its settings checked before any data loads, its data locations absolute."""
    config.typed.update(resolve_locations(config.data))
    task = task_class(config.task)(config)
    config.validate()
    task.validate()
    check_model_size(config)
    return task
