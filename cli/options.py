"""CLI flags generated from the tasks' settings schemas, so each setting is declared once.

A command decorated with `with_settings` accepts the flag of every setting any
task has; `TaskCommand` reads the chosen task from the command line before
parsing (`--task T`, or the task of `--config FILE`), shows only that task's
flags in `--help`, with that task's defaults. A typed flag the task does not
use is refused by `Config.update` with one line, before any data loads.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from typing import Annotated, Any

import typer
import typer.core

from seqtrain.config import SECTIONS, read_toml

CONTEXT = "_typer_context"
PREFIX = "setting__"
PANELS = {"train": "Training", "model": "Model", "data": "Data"}


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def all_settings(sections: tuple[str, ...]) -> dict[str, tuple[str, Any, Any]]:
    """Setting name -> (section, field, type) over every registered task's schema."""
    from seqtrain.tasks import REGISTRY

    found: dict[str, tuple[str, Any, Any]] = {}
    for cls in REGISTRY.values():
        for name, (section, f, hint) in cls.schema.fields().items():
            if section in sections:
                found.setdefault(name, (section, f, hint))
    return found


def help_of(f: Any) -> str:
    """A setting's help text, with its allowed values."""
    choices = f.metadata.get("choices")
    return f.metadata.get("help", "") + (f" One of: {', '.join(choices)}." if choices else "")


def setting_parameters(sections: tuple[str, ...]) -> list[inspect.Parameter]:
    """One keyword parameter per setting, with its Typer option in its section's help panel."""
    params = []
    for name, (section, f, hint) in sorted(all_settings(sections).items(), key=lambda item: SECTIONS.index(item[1][0])):
        help_text = help_of(f)
        decls = [f"{flag_name(name)}/--no-{name.replace('_', '-')}"] if hint is bool else [flag_name(name)]
        option = typer.Option(*decls, help=help_text, rich_help_panel=PANELS[section], show_default=True)
        params.append(
            inspect.Parameter(PREFIX + name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=Annotated[hint, option])
        )
    return params


def with_settings(*sections: str) -> Callable:
    """Give a command the setting flags of `sections`; it receives `overrides`: the ones typed on the command line.

    Only flags the user actually typed override the task's defaults, so a
    task's own defaults apply unless a flag says otherwise.
    """

    def decorate(func: Callable) -> Callable:
        hints = typing.get_type_hints(func, include_extras=True)
        own = inspect.signature(func)
        extra = setting_parameters(sections)

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            context: typer.Context = kwargs.pop(CONTEXT)
            overrides: dict[str, Any] = {}
            for param in extra:
                value = kwargs.pop(param.name)
                source = context.get_parameter_source(param.name)
                if source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT", "PROMPT"):
                    overrides[param.name.removeprefix(PREFIX)] = value
            return func(*args, overrides=overrides, **kwargs)

        kept = [p.replace(annotation=hints[p.name]) for p in own.parameters.values() if p.name not in ("overrides", "return")]
        context = inspect.Parameter(CONTEXT, inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)
        extra_all = [context] + extra
        wrapper.__signature__ = own.replace(parameters=kept + extra_all, return_annotation=None)
        wrapper.__annotations__ = {p.name: p.annotation for p in kept + extra_all}
        del wrapper.__wrapped__  # Typer must read the new signature, not the original's
        return wrapper

    return decorate


def task_on_command_line(args: list[str], default: str | None) -> str | None:
    """The task a command line names (`--task T`, `-t T`, `--task=T`, or the task of `--config FILE`)."""
    for index, arg in enumerate(args):
        if arg in ("--task", "-t", "--config") and index + 1 < len(args):
            value = args[index + 1]
        elif arg.startswith(("--task=", "--config=")):
            value = arg.partition("=")[2]
        else:
            continue
        if arg.startswith("--config"):
            try:
                return read_toml(value)["task"]
            except Exception:  # a bad file is reported by the command itself, with its one-line error
                return default
        return value
    return default


#: below this many columns rich's four-column option panels cut long flag names; plain help wraps instead
NARROW = 100


class TaskCommand(typer.core.TyperCommand):
    """A command whose setting flags (help, defaults) follow the task named on its command line.

    On a terminal narrower than NARROW its help is plain text (flag, then its help wrapped beside or below it),
    in the same panels, so no flag name or help text is cut.
    """

    default_task: str | None = "imdb"

    def format_help(self, ctx, formatter) -> None:
        from rich.console import Console

        if Console().width >= NARROW:
            return super().format_help(ctx, formatter)
        return super(typer.core.TyperCommand, self).format_help(ctx, formatter)

    def format_options(self, ctx, formatter) -> None:
        """The plain help's options, one section per panel (Options, Training, Model, Data)."""
        panels: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None:
                panels.setdefault(getattr(param, "rich_help_panel", None) or "Options", []).append(record)
        for panel, records in panels.items():
            with formatter.section(panel):
                formatter.write_dl(records)

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        from seqtrain.tasks import REGISTRY

        name = task_on_command_line(args, self.default_task)
        cls = REGISTRY.get(name or "")
        if cls is not None:
            config = cls.default_config()
            fields = cls.schema.fields()
            for param in self.params:
                if param.name and param.name.startswith(PREFIX):
                    setting = param.name.removeprefix(PREFIX)
                    param.hidden = setting not in fields
                    if not param.hidden:  # a name two tasks share (--window) shows this task's meaning
                        param.default = getattr(getattr(config, fields[setting][0]), setting)
                        param.help = help_of(fields[setting][1])
        return super().parse_args(ctx, args)


class SummaryCommand(TaskCommand):
    default_task = None
