"""The CLI reference read from the Typer app itself: the docs site renders it, and the docs' tests check
every `seqtrain …` example against it, so neither can drift from the flags the commands really take."""

from __future__ import annotations

import functools
from typing import Any

import typer.main

from seqtrain_cli.options import PREFIX, TaskCommand


Command = Any  # a Click command as Typer builds it (Typer ships its own copy of Click)
Parameter = Any


@functools.cache
def commands() -> dict[str, Command]:
    """Every `seqtrain` subcommand by name, as Click sees it after Typer built it."""
    from seqtrain_cli.main import app

    return dict(typer.main.get_command(app).commands)


@functools.cache
def task_settings(task: str) -> dict[str, tuple[str, object, str]]:
    """Setting name -> (section, the task's default, help) for one task, in schema order."""
    from seqtrain.tasks import task_class
    from seqtrain_cli.options import help_of

    cls = task_class(task)
    config = cls.default_config()
    return {name: (section, getattr(getattr(config, section), name), help_of(f))
            for name, (section, f, _) in cls.schema.fields().items()}


def parameters(command: Command, task: str | None = None) -> list[Parameter]:
    """The command's parameters; for a task command, its own and those settings `task` has (all tasks' when None)."""
    params = [p for p in command.params if not getattr(p, "hidden", False)]
    if task is None or not isinstance(command, TaskCommand):
        return params
    settings = task_settings(task)
    return [p for p in params if not (p.name or "").startswith(PREFIX) or p.name.removeprefix(PREFIX) in settings]


def flags(command: Command, task: str | None = None) -> set[str]:
    """Every option spelling the command accepts (`--no-x` forms and `--help` included)."""
    names = {"--help"}
    for param in parameters(command, task):
        if param.param_type_name == "option":
            names.update(param.opts + param.secondary_opts)
    return names


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("[", "\\[").replace("\n", " ")


def _metavar(argument: Parameter) -> str:
    name = argument.name.upper() + ("..." if argument.nargs == -1 else "")
    return name if argument.required else f"[{name}]"


def _option_row(param: Parameter) -> str:
    spelling = ", ".join(f"`{o}`" for o in param.opts + param.secondary_opts)
    default = "" if param.default in (None, "") or param.is_flag and not param.default else f"`{param.default}`"
    return f"| {spelling} | {_cell(param.help or '')} | {default} |"


def _command_markdown(name: str, command: Command) -> list[str]:
    own = [p for p in parameters(command) if not (p.name or "").startswith(PREFIX)]
    arguments = [p for p in own if p.param_type_name == "argument"]
    options = [p for p in own if p.param_type_name == "option"]
    usage = " ".join(["seqtrain", name] + [_metavar(a) for a in arguments] + ["[OPTIONS]"])
    lines = [f"## `seqtrain {name}`", "", (command.help or "").strip(), "", "```text", usage, "```", ""]
    if arguments:
        lines += ["| argument | what it is |", "|---|---|"]
        lines += [f"| `{_metavar(a)}` | {_cell(getattr(a, 'help', '') or '')} |" for a in arguments]
        lines.append("")
    if options:
        lines += ["| option | what it does | default |", "|---|---|---|"] + [_option_row(o) for o in options] + [""]
    if isinstance(command, TaskCommand):
        lines += [f"The setting flags `seqtrain {name}` takes depend on the task; each task's are listed under "
                  "[Flags by task](#flags-by-task) below, with that task's defaults.", ""]
    return lines


def _task_markdown(task: str) -> list[str]:
    from seqtrain.tasks import task_class

    lines = [f'??? note "`--task {task}`: {_cell(task_class(task).description)}"', ""]
    lines += ["    | flag | section | default | what it sets |", "    |---|---|---|---|"]
    for name, (section, default, help_text) in task_settings(task).items():
        lines.append(f"    | `--{name.replace('_', '-')}` | {section} | `{default!r}` | {_cell(help_text)} |")
    return lines + [""]


def markdown() -> str:
    """The reference page's body: every command with its arguments and options, then every task's setting flags."""
    from seqtrain.tasks import REGISTRY

    lines: list[str] = []
    for name, command in commands().items():
        lines += _command_markdown(name, command)
    lines += ["## Flags by task", "",
              "`seqtrain fit --task T` (and `seqtrain summary --task T`) take the flags of T's settings; "
              "a flag T does not use is refused before any data loads. `seqtrain fit --task T --help` prints the same.", ""]
    for task in sorted(REGISTRY):
        lines += _task_markdown(task)
    return "\n".join(lines)
