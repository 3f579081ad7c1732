"""Hyper-parameter search (`seqtrain tune`) on Optuna.

Optuna because it is the usual choice with PyTorch and brings what a search
needs without glue: TPE sampling, pruning on the per-epoch validation reports,
and studies kept in a database (SQLite beside the runs, or any database URL, so
several processes or machines share one study and never run one trial twice).

Every trial is an ordinary `fit` run folder under `<logdir>/<study>/`, scored
by the task's own validation monitor; the test split is scored once, for the
best trial. The study records its task, fixed settings and space, so
`--resume STUDY` (after Ctrl-C or kill -9) and extra workers need nothing else.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import time
import tomllib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from seqtrain.errors import SeqtrainError

DB = "study.db"
BEST_CONFIG = "config.toml"
RANKING = "trials.md"
KINDS = ("log", "float", "int", "choice")


# ------------------------------------------------------------------ spaces
@dataclass(frozen=True)
class Param:
    """One searched setting: `log:LOW:HIGH`, `float:LOW:HIGH`, `int:LOW:HIGH` or `choice:A,B,C`."""

    name: str
    kind: str
    low: float = 0.0
    high: float = 0.0
    choices: tuple[Any, ...] = ()

    def suggest(self, trial) -> Any:
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high))
        return trial.suggest_float(self.name, self.low, self.high, log=self.kind == "log")

    def spec(self) -> str:
        if self.kind == "choice":
            return "choice:" + ",".join(str(c).lower() if isinstance(c, bool) else str(c) for c in self.choices)
        return f"{self.kind}:{self.low:g}:{self.high:g}"


def parse_param(text: str, fields: dict[str, tuple[str, Any, Any]], where: str = "--param") -> Param:
    """`name=kind:...` checked against the task's settings, with a one-line error naming what is wrong."""
    name, eq, spec = text.partition("=")
    name = name.strip().replace("-", "_")
    if not eq or not name or not spec:
        raise SeqtrainError(f"{where} '{text}': write NAME=KIND:..., e.g. lr=log:1e-4:1e-2, hidden=int:32:256, cell=choice:lstm,gru")
    return parse_spec(name, spec.strip(), fields, where)


def parse_spec(name: str, spec: str, fields: dict[str, tuple[str, Any, Any]], where: str) -> Param:
    if name not in fields:
        raise SeqtrainError(f"{where}: '{name}' is not a setting of this task; `seqtrain fit --task T --help` lists them")
    kind, _, rest = spec.partition(":")
    if kind not in KINDS:
        raise SeqtrainError(f"{where} {name}={spec}: the kind must be one of {', '.join(KINDS)}, e.g. {name}=log:1e-4:1e-2")
    _, f, hint = fields[name]
    if kind == "choice":
        raw = [c.strip() for c in rest.split(",") if c.strip()]
        if not raw:
            raise SeqtrainError(f"{where} {name}={spec}: list the choices, e.g. {name}=choice:a,b")
        choices = tuple(typed_value(name, c, hint, f, where) for c in raw)
        return Param(name, kind, choices=choices)
    parts = rest.split(":")
    if len(parts) != 2:
        raise SeqtrainError(f"{where} {name}={spec}: write {kind}:LOW:HIGH")
    try:
        low, high = float(parts[0]), float(parts[1])
    except ValueError:
        raise SeqtrainError(f"{where} {name}={spec}: LOW and HIGH must be numbers") from None
    if hint not in (int, float):
        raise SeqtrainError(f"{where} {name}={spec}: '{name}' is not a number setting; use choice:A,B")
    if hint is int and kind != "int":
        raise SeqtrainError(f"{where} {name}={spec}: '{name}' is a whole number; use int:LOW:HIGH")
    if hint is float and kind == "int":
        raise SeqtrainError(f"{where} {name}={spec}: '{name}' is a real number; use float:LOW:HIGH or log:LOW:HIGH")
    if not low < high or (kind == "log" and low <= 0):
        raise SeqtrainError(f"{where} {name}={spec}: need LOW < HIGH{' and LOW > 0 for log' if kind == 'log' else ''}")
    return Param(name, kind, low, high)


def typed_value(name: str, text: str, hint: Any, f: Any, where: str) -> Any:
    """A choice converted to the setting's type and checked against its allowed values."""
    try:
        value = {bool: lambda t: {"true": True, "false": False}[t.lower()], int: int, float: float}.get(hint, str)(text)
    except (KeyError, ValueError):
        raise SeqtrainError(f"{where} {name}: '{text}' is not a valid {getattr(hint, '__name__', 'value')}") from None
    allowed = f.metadata.get("choices")
    if allowed and value not in allowed:
        raise SeqtrainError(f"{where} {name}: '{text}' is not one of {', '.join(allowed)}")
    return value


def read_space(path: Path, fields: dict[str, tuple[str, Any, Any]]) -> dict[str, Param]:
    """A TOML space file: `name = "kind:..."` lines (top level, or in a [space] table)."""
    try:
        raw = tomllib.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SeqtrainError(f"cannot read space file {path}: {exc}") from None
    raw = raw.get("space", raw)
    out = {}
    for name, spec in raw.items():
        if not isinstance(spec, str):
            raise SeqtrainError(f"{path}: {name} = {spec!r}; write {name} = \"log:1e-4:1e-2\" (a string KIND:...)")
        out[name] = parse_spec(name.replace("-", "_"), spec, fields, str(path))
    return out


def default_space(task_name: str) -> dict[str, str]:
    """The family's default space: the settings that matter most for it, in ranges measured sound."""
    from seqtrain.tasks import task_class
    from seqtrain.tasks.classification import TextClassificationTask
    from seqtrain.tasks.forecasting import ForecastTask

    cls = task_class(task_name)
    fields = cls.schema.fields()
    if issubclass(cls, TextClassificationTask):
        space = {"lr": "log:5e-4:5e-3", "hidden": "int:32:192", "embed_dim": "choice:64,128,200",
                 "dropout": "float:0.1:0.6", "batch_size": "choice:16,32,64", "cell": "choice:gru,lstm"}
    elif issubclass(cls, ForecastTask):
        space = {"lr": "log:1e-3:2e-2", "hidden": "int:16:128", "layers": "int:1:2", "dropout": "float:0:0.3"}
        if "transform" in fields:
            space["transform"] = "choice:none,scale,diff+scale,log+diff+scale"
    else:
        space = {"lr": "log:1e-4:1e-2", "hidden": "int:32:256", "dropout": "float:0:0.5"}
    return {k: v for k, v in space.items() if k in fields}


def build_space(task_name: str, params: list[str], space_file: Path | None) -> dict[str, Param]:
    """Default space, replaced by --space FILE, then each --param added or overriding."""
    from seqtrain.tasks import task_class

    fields = task_class(task_name).schema.fields()
    if space_file is not None:
        space = read_space(space_file, fields)
    else:
        space = {name: parse_spec(name, spec, fields, "default space") for name, spec in default_space(task_name).items()}
    for text in params:
        param = parse_param(text, fields)
        space[param.name] = param
    return space


# ------------------------------------------------------------------ studies
@dataclass
class StudySpec:
    """What a study needs to run more trials anywhere: recorded in the study itself."""

    task: str
    fixed: dict[str, Any]
    space: dict[str, str]
    trials: int
    seed: int = 42

    def params(self) -> dict[str, Param]:
        from seqtrain.tasks import task_class

        fields = task_class(self.task).schema.fields()
        return {name: parse_spec(name, spec, fields, "study") for name, spec in self.space.items()}


def optuna_module():
    try:
        import optuna
    except ImportError:
        raise SeqtrainError("seqtrain tune needs Optuna: pip install 'seqtrain[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats: stable in use
    return optuna


STORAGE_ATTEMPTS = 5  # opening a study's database while another process creates it: the later opener retries


def study_dir(logdir: str | Path, name: str) -> Path:
    return Path(logdir) / name


def storage_of(logdir: str | Path, name: str, url: str | None):
    """Optuna's storage: the database URL given, else SQLite in the study's folder; heartbeats let a trial whose
    worker was killed be marked failed, so it never blocks the study."""
    optuna = optuna_module()
    folder = study_dir(logdir, name)
    folder.mkdir(parents=True, exist_ok=True)
    url = url or f"sqlite:///{(folder / DB).resolve()}"
    from sqlalchemy.exc import IntegrityError

    for attempt in range(STORAGE_ATTEMPTS):
        try:
            return optuna.storages.RDBStorage(url, heartbeat_interval=10, grace_period=30, engine_kwargs=engine_kwargs(url))
        except IntegrityError:  # another process wrote a fresh database's schema version at the same moment
            if attempt == STORAGE_ATTEMPTS - 1:
                raise
            time.sleep(0.2)


def engine_kwargs(url: str) -> dict[str, Any]:
    # SQLite shared by processes: wait for a writer's lock rather than fail at once
    return {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}


def create_study(name: str, logdir: str, spec: StudySpec, direction: str, storage_url: str | None, pruner: str):
    optuna = optuna_module()
    storage = storage_of(logdir, name, storage_url)
    try:
        study = optuna.create_study(study_name=name, storage=storage, direction=direction)
    except optuna.exceptions.DuplicatedStudyError:
        raise SeqtrainError(f"study '{name}' exists already: continue it with --resume {name}, or choose another --study") from None
    study.set_user_attr("spec", dataclasses.asdict(spec))
    study.set_user_attr("pruner", pruner)
    return study


def load_study(name: str, logdir: str, storage_url: str | None):
    optuna = optuna_module()
    if storage_url is None and not (study_dir(logdir, name) / DB).exists():
        raise SeqtrainError(f"no study '{name}' under {logdir} (expected {study_dir(logdir, name) / DB}); check --logdir")
    try:
        return optuna.load_study(study_name=name, storage=storage_of(logdir, name, storage_url))
    except KeyError:
        raise SeqtrainError(f"no study '{name}' in {storage_url or study_dir(logdir, name) / DB}") from None


def make_pruner(name: str):
    optuna = optuna_module()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise SeqtrainError(f"--pruner must be median or none, not '{name}'")


def finished(study) -> int:
    optuna = optuna_module()
    return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)))


def run_trials(
    study, logdir: str, timeout: float | None, console: Console | None, worker: int = 0, pruner=None,
) -> None:
    """This process's share of the study: trials until the study holds `trials` finished ones (or the timeout)."""
    optuna = optuna_module()
    from seqtrain.tasks import build_config, make_task
    from seqtrain.training.trainer import Trainer

    spec = StudySpec(**study.user_attrs["spec"])
    params = spec.params()
    folder = study_dir(logdir, study.study_name)
    pruner = pruner or make_pruner(study.user_attrs.get("pruner", "median"))
    # the sampler and pruner are per process; the trials, their values and reports are in the storage
    study.sampler = optuna.samplers.TPESampler(seed=spec.seed + worker, n_startup_trials=min(5, max(spec.trials // 3, 2)))
    study.pruner = pruner

    def objective(trial) -> float:
        values = {name: param.suggest(trial) for name, param in params.items()}
        config = build_config(spec.task, {**spec.fixed, **values, "logdir": str(folder)})
        task = make_task(config)

        def report(epoch: int, metrics: dict[str, float]) -> None:
            trial.set_user_attr("run", trainer.run_dir.name)
            trial.report(metrics.get(f"val_{task.monitor}", math.nan), epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {epoch}")

        if console:
            shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
            console.print(f"[bold]trial {trial.number:d}[/] {escape(shown)}")
        trainer = Trainer(task, console, callbacks=[report], test=False)
        result = trainer.fit()
        trial.set_user_attr("run", result.run_dir.name)
        if result.interrupted:
            raise KeyboardInterrupt
        score = result.best_val.get(task.monitor)
        if score is None:
            raise SeqtrainError(f"task '{spec.task}' reported no validation {task.monitor}: give it a validation split")
        return score

    budget = optuna.study.MaxTrialsCallback(
        spec.trials, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    )
    if finished(study) >= spec.trials:
        return
    study.optimize(objective, timeout=timeout, callbacks=[budget], catch=(SeqtrainError,))


def start_workers(name: str, logdir: str, storage_url: str | None, timeout: float | None, count: int) -> list[subprocess.Popen]:
    """`count` more processes on this machine, each running trials of the same study."""
    procs = []
    for worker in range(1, count + 1):
        command = [sys.executable, "-m", "seqtrain", "tune", "--resume", name, "--logdir", logdir, "--worker", str(worker),
                   "--quiet"]
        if storage_url:
            command += ["--storage", storage_url]
        if timeout:
            command += ["--timeout", str(timeout)]
        procs.append(subprocess.Popen(command, stdout=subprocess.DEVNULL))
    return procs


# ------------------------------------------------------------------ results
def ranked(study) -> list[Any]:
    """Finished trials best first, then pruned ones (by their last report), then the rest."""
    optuna = optuna_module()
    state = optuna.trial.TrialState
    sign = 1 if study.direction == optuna.study.StudyDirection.MINIMIZE else -1

    def key(trial):
        if trial.state == state.COMPLETE:
            return (0, sign * trial.value, trial.number)
        if trial.state == state.PRUNED and trial.intermediate_values:
            return (1, sign * trial.intermediate_values[max(trial.intermediate_values)], trial.number)
        return (2, 0.0, trial.number)

    return sorted(study.get_trials(deepcopy=False), key=key)


def ranking_rows(study) -> tuple[list[str], list[list[str]]]:
    spec = StudySpec(**study.user_attrs["spec"])
    header = ["rank", "trial", "state", "value", "epochs", *spec.space, "run"]
    rows = []
    for rank, trial in enumerate(ranked(study), start=1):
        value = trial.value if trial.value is not None else (
            trial.intermediate_values[max(trial.intermediate_values)] if trial.intermediate_values else None
        )
        rows.append([
            str(rank), str(trial.number), trial.state.name.lower(), "" if value is None else f"{value:.4f}",
            str(max(trial.intermediate_values) if trial.intermediate_values else 0),
            *(fmt(trial.params.get(name)) for name in spec.space), trial.user_attrs.get("run", ""),
        ])
    return header, rows


def fmt(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def write_ranking(study, folder: Path) -> Path:
    header, rows = ranking_rows(study)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    path = folder / RANKING
    path.write_text("\n".join(lines) + "\n")
    return path


def ranking_table(study) -> Table:
    """The ranking on screen: the run folders are in trials.md, so the settings get the width."""
    header, rows = ranking_rows(study)
    header, rows = header[:-1], [row[:-1] for row in rows]
    better = "lower" if study.direction.name == "MINIMIZE" else "higher"
    table = Table(title=escape(f"study {study.study_name}: {study.user_attrs['spec']['task']}, validation ({better} is better)"))
    for column in header:
        table.add_column(column, justify="right" if column in ("rank", "trial", "value", "epochs") else "left",
                         no_wrap=column in ("state", "value"))
    for row in rows:
        table.add_row(*row)
    return table


def finish_study(study, logdir: str, console: Console | None) -> dict[str, Any] | None:
    """Write the ranking and the best trial's config.toml; score the best trial's test split once."""
    optuna = optuna_module()
    from seqtrain.inference import evaluate_trained, load_trained
    from seqtrain.tasks import read_config

    folder = study_dir(logdir, study.study_name)
    ranking = write_ranking(study, folder)
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    if console:
        console.print(ranking_table(study))
    if not complete:
        if console:
            console.print("no trial finished; nothing to write")
        return None
    best = study.best_trial
    run = folder / best.user_attrs["run"]
    config = read_config(run / "config.toml")
    config.train.logdir = str(logdir)
    (folder / BEST_CONFIG).write_text(config.to_toml())
    rows = evaluate_trained(load_trained(run / "best.pt", config.train.device, config.train.threads), "test", None, None)
    summary = {"study": study.study_name, "best_trial": best.number, "run": str(run), "params": best.params,
               "val": best.value, "test": rows, "ranking": str(ranking), "config": str(folder / BEST_CONFIG)}
    (folder / "best.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    if console:
        from seqtrain.training.progress import metrics_tables

        title = escape(f"best trial {best.number} ({run.name}): test, scored once")
        for table in metrics_tables(title, rows, list(rows["test"])):  # per-class scores in a table of their own
            console.print(table)
        console.print(escape(f"best settings: {folder / BEST_CONFIG} (re-run with `seqtrain fit --config {folder / BEST_CONFIG}`)"))
    return summary


def new_study_name(task: str) -> str:
    return f"{task}-study-{time.strftime('%Y%m%d-%H%M%S')}"


def tune(
    task: str, overrides: dict[str, Any], trials: int, timeout: float | None, params: list[str], space_file: Path | None,
    study_name: str | None, storage_url: str | None, workers: int, pruner: str, console: Console | None,
) -> dict[str, Any] | None:
    """A new study: its space from the family's defaults, --space and --param; the rest of the flags fixed."""
    from seqtrain.tasks import build_config, make_task

    if trials < 1:
        raise SeqtrainError(f"--trials must be at least 1, not {trials}")
    make_pruner(pruner)
    space = build_space(task, params, space_file)
    fixed = {k: v for k, v in overrides.items() if k not in space}
    config = build_config(task, {**fixed})
    probe = make_task(config)  # settings checked before any trial starts
    logdir = config.train.logdir
    fixed.pop("logdir", None)
    name = study_name or new_study_name(task)
    spec = StudySpec(task, fixed, {k: p.spec() for k, p in space.items()}, trials, config.train.seed)
    direction = "maximize" if probe.monitor_mode == "max" else "minimize"
    study = create_study(name, logdir, spec, direction, storage_url, pruner)
    if console:
        console.print(f"study [bold]{escape(name)}[/]: {trials:d} trials of "
                      + escape(f"{task}, {direction} validation {probe.monitor}; runs and {DB} in {study_dir(logdir, name)}"))
    return continue_study(study, logdir, timeout, workers, storage_url, console)


def continue_study(study, logdir: str, timeout: float | None, workers: int, storage_url: str | None,
                   console: Console | None) -> dict[str, Any] | None:
    procs = start_workers(study.study_name, logdir, storage_url, timeout, workers - 1) if workers > 1 else []
    try:
        run_trials(study, logdir, timeout, console)
    finally:
        for proc in procs:
            proc.wait()
    return finish_study(study, logdir, console)


def resume(name: str, logdir: str, timeout: float | None, workers: int, storage_url: str | None, console: Console | None,
           worker: int = 0) -> dict[str, Any] | None:
    study = load_study(name, logdir, storage_url)
    if worker:  # a helper process started by --workers: trials only
        run_trials(study, logdir, timeout, None, worker)
        return None
    if console:
        console.print(f"study [bold]{escape(name)}[/]: {finished(study):d} of {study.user_attrs['spec']['trials']:d} trials finished")
    return continue_study(study, logdir, timeout, workers, storage_url, console)


def show(name: str, logdir: str, storage_url: str | None, console: Console) -> None:
    study = load_study(name, logdir, storage_url)
    console.print(ranking_table(study))
    if os.access(study_dir(logdir, name), os.W_OK):
        write_ranking(study, study_dir(logdir, name))

