"""Tasks, found by name through a small registry."""

from __future__ import annotations

from seqtrain.errors import SeqtrainError
from seqtrain.tasks import forecasting, imdb, language_modeling, seq2seq  # noqa: F401  (registers)
from seqtrain.tasks.base import REGISTRY, Task


def get_task(name: str) -> Task:
    try:
        return REGISTRY[name]
    except KeyError:
        raise SeqtrainError(f"unknown task '{name}'; choose one of {', '.join(sorted(REGISTRY))} (see `seqtrain tasks`)")
