"""CLI flags generated from the config dataclasses, so each setting is declared once."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from typing import Annotated, Any

import typer

from seqtrain.config import Config, section_fields

CONTEXT = "_typer_context"
PANELS = {"model": "Model", "train": "Training", "data": "Data"}


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def config_parameters(sections: tuple[str, ...]) -> list[inspect.Parameter]:
    """One keyword parameter `<section>__<field>` per config field, with its Typer option."""
    params = []
    for section in sections:
        for f, hint in section_fields(section):
            help_text = f.metadata.get("help", "")
            choices = f.metadata.get("choices")
            if choices:
                help_text += f" One of: {', '.join(choices)}."
            decls = [f"{flag_name(f.name)}/--no-{f.name.replace('_', '-')}"] if hint is bool else [flag_name(f.name)]
            option = typer.Option(*decls, help=help_text, rich_help_panel=PANELS[section])
            params.append(
                inspect.Parameter(
                    f"{section}__{f.name}", inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=Annotated[hint, option]
                )
            )
    return params


def with_config_options(*sections: str) -> Callable:
    """Give a command the flags of `sections`; it receives `overrides`: the ones typed on the command line.

    Only flags the user actually typed override the task's defaults, so a task
    can choose its own defaults while --help still shows the general ones.
    """

    def decorate(func: Callable) -> Callable:
        hints = typing.get_type_hints(func, include_extras=True)
        own = inspect.signature(func)
        extra = config_parameters(sections)

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            context: typer.Context = kwargs.pop(CONTEXT)
            overrides: dict[str, Any] = {}
            for param in extra:
                value = kwargs.pop(param.name)
                source = context.get_parameter_source(param.name)
                if source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT", "PROMPT"):
                    overrides[param.name.replace("__", ".", 1)] = value
            return func(*args, overrides=overrides, **kwargs)

        kept = [p.replace(annotation=hints[p.name]) for p in own.parameters.values() if p.name not in ("overrides", "return")]
        context = inspect.Parameter(CONTEXT, inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)
        extra_all = [context] + extra
        wrapper.__signature__ = own.replace(parameters=kept + extra_all, return_annotation=None)
        wrapper.__annotations__ = {p.name: p.annotation for p in kept + extra_all}
        del wrapper.__wrapped__  # Typer must read the new signature, not the original's
        return wrapper

    return decorate


def build_config(task_name: str, task_defaults: dict[str, Any], overrides: dict[str, Any]) -> Config:
    """Dataclass defaults, then the task's defaults, then what the user typed."""
    config = Config(task=task_name)
    config.update(task_defaults)
    config.update(overrides)
    return config
