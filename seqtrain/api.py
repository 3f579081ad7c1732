"""The Python API: train, load and use models from Python code, with the CLI's concepts and checks.

Every `seqtrain` command that trains or uses a model is a thin layer over
this module, so a script and a command line run the same code and refuse the
same mistakes with the same one-line message, raised here as
`seqtrain.errors.SeqtrainError`:

    import seqtrain

    run = seqtrain.fit("sine", epochs=2, logdir="runs")
    model = seqtrain.load(run.run_dir)
    model.forecast("series.csv")

`import seqtrain` loads this module but not torch: torch, the tasks and the
trainer are imported by the first call that needs them. On the shared 2-core
machine `import seqtrain` took 20 ms (`python -X importtime`, best of 8) where
`import torch` took 4 s to 25 s, by the load (docs/python-api.md;
scripts/bench_import.py measures both).

Docstrings follow the Google style.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from seqtrain.errors import SeqtrainError
from seqtrain.training.result import Run

if TYPE_CHECKING:
    import torch
    from rich.console import Console
    from torch import nn

    from seqtrain.config import Config, Schema
    from seqtrain.inference import Trained
    from seqtrain.tasks.classification import Prediction

__all__ = ["Callback", "Model", "Run", "Setting", "TaskInfo", "fit", "list_tasks", "load"]

#: A per-epoch callback: called as `callback(epoch, metrics)` after each epoch's checkpoints are written, with the
#: 1-based epoch and its metrics (`train_loss`, `val_loss`, `val_accuracy`, ...); returning `True` stops the run there.
Callback = Callable[[int, dict[str, float]], Any]

#: what `resume` may change: how long to train, where, and where the data is now
RESUMABLE = {
    "epochs", "device", "patience", "threads", "data", "data_dir", "cache_dir", "mirror", "save_every", "max_bad_steps",
}


# --------------------------------------------------------------------- tasks
@dataclass(frozen=True)
class Setting:
    """One setting a task accepts: a keyword argument of `fit`, and the flag `--name-with-dashes` of `seqtrain fit`.

    Attributes:
        section: `train`, `model` or `data` (the section of the run's config.toml).
        default: the task's default value.
        help: what it does, as `seqtrain fit --help` shows it.
        choices: the allowed values, when the setting has a fixed set.
    """

    section: str
    default: Any
    help: str
    choices: tuple[str, ...] | None = None


@dataclass(frozen=True)
class TaskInfo:
    """A task `fit` can train, as `seqtrain tasks` lists it.

    Attributes:
        name: what to pass as `fit(task=...)`.
        description: what it trains, on which data.
        ability: what its trained model does (`predict`, `generate`, `translate`, `forecast`, ...): the method
            of that name on `Model`; None when it is scored only (`Model.evaluate`).
        defaults: the task's own defaults, where they differ from the shared ones.
        settings: every setting the task accepts, by keyword name, with its default.
    """

    name: str
    description: str
    ability: str | None
    defaults: dict[str, Any]
    settings: dict[str, Setting]


def list_tasks() -> dict[str, TaskInfo]:
    """The tasks `fit` knows, by name (alphabetical), with their abilities and settings: `seqtrain tasks`.

    (Not `seqtrain.tasks()`: that name is the subpackage of task classes, which replaces any attribute of
    that name once it is imported.)

    Returns:
        Task name -> `TaskInfo`.

    Examples:
        >>> sorted(seqtrain.list_tasks()["sine"].settings)[:3]
        ['accumulate', 'batch_size', 'cell']
    """
    from seqtrain.tasks import REGISTRY

    found = {}
    for name, cls in sorted(REGISTRY.items()):
        config = cls.default_config()
        settings = {
            key: Setting(section, getattr(getattr(config, section), key), f.metadata.get("help", ""), f.metadata.get("choices"))
            for key, (section, f, _) in cls.schema.fields().items()
        }
        found[name] = TaskInfo(name, cls.description, cls.ability, dict(cls.defaults), settings)
    return found


# ----------------------------------------------------------------------- fit
def fit(
    task: str | None = None,
    *,
    config: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
    progress: bool | Console = False,
    callbacks: Sequence[Callback] = (),
    **settings: Any,
) -> Run:
    """Train a model into a new run folder, then score its best checkpoint on the test split: `seqtrain fit`.

    Args:
        task: what to train (see `list_tasks()`); default `imdb`, or the task of `config`.
        config: a run's config.toml to train again; `settings` override it.
        resume: a run folder to continue from its last checkpoint, with its own task and settings; only
            `epochs`, `device`, `patience`, `threads`, `save_every`, `max_bad_steps` and the data locations
            may be given.
        progress: show progress bars, the run's notes and its report on the terminal (True), or on this
            `rich.console.Console`; off by default, so library use prints nothing.
        callbacks: functions called as `callback(epoch, metrics)` after each epoch's checkpoints are written
            (1-based epoch; metrics such as `train_loss`, `val_loss`, `val_accuracy`). Returning `True` (the
            bool) stops training after that epoch, like early stopping; the best checkpoint is still tested.
            With several processes they run in the first one only.
        **settings: any setting of the task by name, as its flag without the dashes: `epochs=2`,
            `batch_size=32`, `data_dir="data/aclImdb"`, `logdir="runs"`. Checked like the flags, before any
            data loads (`list_tasks()[name].settings` lists them).

    Returns:
        The finished run: its folder, best checkpoint and metrics.

    Raises:
        SeqtrainError: a setting the task lacks, a value of the wrong type or outside its range, missing data,
            a diverged run...: the one-line message `seqtrain fit` prints, naming the flag.

    Examples:
        >>> run = seqtrain.fit("sine", epochs=2, hidden=16, logdir="runs")
        >>> run.test["mse"], run.best_checkpoint
    """
    from seqtrain.tasks import make_task
    from seqtrain.training.trainer import Trainer

    chosen, run = settings_for(task, config, resume, settings)
    return Trainer(make_task(chosen), console_of(progress), callbacks).fit(resume=run)


def settings_for(
    task: str | None, config: str | os.PathLike | None, resume: str | os.PathLike | None, settings: dict[str, Any]
) -> tuple[Config, Path | None]:
    """The run's config and, when resuming, its folder: a task's defaults, a config.toml or a run's own
    settings, with `settings` over them; refused in one line where the CLI refuses the same flags."""
    from seqtrain.tasks import build_config, config_from_dict, read_config, task_class
    from seqtrain.training.budget import keep_typed_epochs
    from seqtrain.training.runs import follow_latest, resolve_checkpoint, resume_point

    if resume is not None:
        if task or config:
            raise SeqtrainError("--resume continues a run with its own task and settings: drop --task and --config")
        run = resolve_checkpoint(os.fspath(resume), prefer="last.pt").parent
        chosen = config_from_dict(resume_point(run)[1]["config"])
        ignored = sorted(set(settings) - RESUMABLE)
        if ignored:
            flags = ", ".join("--" + name.replace("_", "-") for name in ignored)
            raise SeqtrainError(f"--resume keeps the run's settings; drop {flags} (only epochs, device, patience, threads, save-every, max-bad-steps and data locations may change)")
        chosen.update(typed(chosen.schema, settings))
        return chosen, run
    if config is not None:
        chosen = read_config(follow_latest(Path(config)))
        if task and task != chosen.task:
            raise SeqtrainError(f"{config} is a '{chosen.task}' config; drop --task {task} or use another file")
        chosen.update(typed(chosen.schema, settings))
        keep_typed_epochs(chosen, settings)
        return chosen, None
    name = task or "imdb"
    return build_config(name, typed(task_class(name).schema, settings)), None


#: the words a type-mismatch message uses for each setting type
KINDS = {bool: "True or False", int: "an integer", float: "a number", str: "a string"}


def typed(schema: Schema, settings: dict[str, Any]) -> dict[str, Any]:
    """Keyword settings checked against their fields' types (the CLI's flags are typed by Typer).

    Names the schema lacks pass through: `Config.update` refuses them with its own line.
    """
    fields = schema.fields()
    checked = {}
    for key, value in settings.items():
        name = key.rpartition(".")[2]
        checked[key] = typed_value(name, fields[name][2], value) if name in fields else value
    return checked


def typed_value(name: str, hint: Any, value: Any) -> Any:
    """`value` as setting `name` of type `hint` takes it: a path for a string, an integer for a float; anything
    else of the wrong type is refused in one line naming the flag (types other than bool, int, float and str,
    optional or not, are left to the setting's own checks)."""
    from seqtrain.config import setting_kind

    kind, optional = setting_kind(hint)
    if kind not in KINDS or (value is None and optional):
        return value
    if kind is str and isinstance(value, os.PathLike):
        return os.fspath(value)
    if kind is float and type(value) is int:
        return float(value)
    if isinstance(value, kind) and not (kind is int and type(value) is bool):
        return value
    flag = "--" + name.replace("_", "-")
    raise SeqtrainError(f"{flag} must be {KINDS[kind]}{' or None' if optional else ''}, not {value!r}")


def console_of(progress: bool | Console | None) -> Console | None:
    """The console progress goes to: a new one on stdout for True, the one given, or None (silent)."""
    if progress is True:
        from rich.console import Console

        return Console()
    return progress or None


# ---------------------------------------------------------------------- load
def load(
    run: str | os.PathLike | None = None,
    *,
    logdir: str | os.PathLike = "runs",
    device: str = "auto",
    threads: int = 0,
) -> Model:
    """A trained model from its checkpoint alone (no data needed), on `device`, ready to use.

    Args:
        run: a run folder (its best.pt), a checkpoint file, a run name under `logdir`, or `latest` (the
            default): the newest run `fit` started in `logdir`; `runs/latest` works too.
        logdir: the folder that holds the run folders.
        device: `auto` (a GPU when there is one), `cpu`, `cuda` or `cuda:N`.
        threads: torch's CPU threads (set for the whole process, as `seqtrain predict --threads` does); 0 chooses
            from the model: 1 for every default model.

    Returns:
        The model, in eval mode.

    Raises:
        SeqtrainError: no such run or checkpoint, a damaged or foreign checkpoint, a device that is not there.

    Examples:
        >>> model = seqtrain.load("runs/latest")
        >>> model.task, model.ability
        ('imdb', 'predict')
    """
    from seqtrain.inference import load_trained
    from seqtrain.training.runs import resolve_checkpoint

    run = None if run is None else os.fspath(run)
    return Model(load_trained(resolve_checkpoint(run, os.fspath(logdir)), device, threads))


class Model:
    """A trained model and its task: use it through the task's ability, or score it.

    A model has the methods of its task's ability: `predict` (classifiers), `generate` (language models),
    `translate` (seq2seq), `forecast` (forecasters), and any ability a task adds, which appears here as
    `model.<ability>(...)` with the task method's own arguments (the model and device are filled in). Calling
    one the task lacks raises `SeqtrainError` naming the one it has. Get one from `load`.

    Attributes:
        trained: the task (its checkpoint metadata loaded), the torch module and its device.
    """

    def __init__(self, trained: Trained):
        self.trained = trained

    @property
    def task(self) -> str:
        """The task's name, e.g. `imdb`."""
        return self.trained.config.task

    @property
    def ability(self) -> str | None:
        """What the model does: the name of its method (`predict`, `generate`, ...), or None (scored only)."""
        return self.trained.task.ability

    @property
    def config(self) -> Config:
        """The run's settings (as its config.toml holds them)."""
        return self.trained.config

    @property
    def checkpoint(self) -> Path:
        """The checkpoint file the model was loaded from."""
        return self.trained.checkpoint

    @property
    def module(self) -> nn.Module:
        """The torch module itself, in eval mode."""
        return self.trained.model

    @property
    def device(self) -> torch.device:
        """Where the module's weights are."""
        return self.trained.device

    def __repr__(self) -> str:
        return f"<seqtrain.Model {self.task} ({self.ability or 'evaluate only'}) from {self.checkpoint}>"

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *([self.ability] if self.ability else [])})

    def __getattr__(self, name: str) -> Callable[..., Any]:
        """An ability no method here names (one a task added): the task's method, bound to this model."""
        if name.startswith("_") or name == "trained":
            raise AttributeError(name)
        from seqtrain.tasks import REGISTRY

        if name == self.ability or name in {cls.ability for cls in REGISTRY.values()}:
            return self._use(name)
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def _use(self, method_name: str, ability: str | None = None) -> Callable[..., Any]:
        """The task's method `method_name` (by default the one named as the `ability` it serves) with this model
        (and its device, where the method takes one) filled in.

        The callable has the task method's signature less those two, so `help(model.predict)` shows what to
        pass; a task without the ability raises `SeqtrainError` naming the method that fits.
        """
        ability = ability or method_name
        method = getattr(self.trained.require(ability), method_name)
        signature = inspect.signature(method)
        parameters = list(signature.parameters.values())[1:]  # the model comes first
        filled = {"device": self.device} if "device" in signature.parameters else {}
        public = signature.replace(parameters=[p for p in parameters if p.name not in filled])

        def call(*args: Any, **kwargs: Any) -> Any:
            bound = public.bind(*args, **kwargs)
            return method(self.module, **bound.arguments, **filled)

        call.__name__, call.__doc__, call.__signature__ = method_name, method.__doc__, public  # type: ignore[attr-defined]
        return call

    # ----------------------------------------------------------- abilities
    def predict(
        self, texts: str | Sequence[str], *, top_k: int = 1, threshold: float | None = None
    ) -> list[list[Prediction]] | list[tuple[str, list[Prediction] | float]]:
        """Classify texts (or, for sequence and audio models, the sequences in files): `seqtrain predict`.

        Args:
            texts: the texts (one string is one text); for `signal`, `audio` and `fsdd` models, paths of files
                (WAV, .ts, CSV, .npy), each holding one or more sequences.
            top_k: how many of the most likely labels to give per text (one-label models).
            threshold: multi-label models: give every label at least this likely (default: the run's).

        Returns:
            Per text, its predictions (`label`, `probability`), most likely first; a multi-label text where no
            label reaches the threshold gets an empty list. Sequence models: a `(name, predictions)` pair per
            sequence in the files (`name` is the file's, with `:i` for the i-th of several), where a regression
            model's predictions are its number.

        Examples:
            >>> [[p.label for p in ps] for ps in model.predict(["a wonderful film", "dull"])]
            [['pos'], ['neg']]
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            return []
        if hasattr(self.trained.require("predict"), "predict_files"):  # sequence models read files, not texts
            return self._use("predict_files", "predict")(texts, top_k=top_k)
        return self._use("predict")(texts, top_k=top_k, threshold=threshold)

    @overload
    def generate(self, prime: str = "", *, length: int = 500, temperature: float = 1.0, top_k: int | None = None,
                 seed: int | None = None, stream: Literal[False] = False) -> str: ...

    @overload
    def generate(self, prime: str = "", *, length: int = 500, temperature: float = 1.0, top_k: int | None = None,
                 seed: int | None = None, stream: Literal[True]) -> Iterator[str]: ...

    def generate(
        self, prime: str = "", *, length: int = 500, temperature: float = 1.0, top_k: int | None = None,
        seed: int | None = None, stream: bool = False,
    ) -> str | Iterator[str]:
        """Sample text from a language model, one recurrent step per token: `seqtrain generate`.

        Args:
            prime: text to start from (words, for word-level models); it begins the output.
            length: tokens (characters or words) to sample after the prime.
            temperature: above 0: below 1 is more conservative, above 1 more varied.
            top_k: sample only among the k most likely tokens.
            seed: seed the sampler for repeatable text.
            stream: give the text piece by piece as it is sampled (an iterator) instead of one string.

        Returns:
            The prime and the sampled text.

        Examples:
            >>> model.generate(prime="ROMEO:", length=200, temperature=0.5, seed=1)
        """
        if length < 0:
            raise SeqtrainError(f"--length must be 0 or more, not {length}")
        pieces = self._use("generate")(prime, length, temperature=temperature, top_k=top_k, seed=seed)
        return pieces if stream else "".join(pieces)

    def translate(
        self, texts: str | Sequence[str], *, beam: int = 1, length_penalty: float = 1.0, max_len: int = 0
    ) -> list[str]:
        """Translate texts with a seq2seq model: `seqtrain translate`.

        Args:
            texts: the texts (one string is one text).
            beam: beam width; 1 decodes greedily (all texts in one batch).
            length_penalty: beam ranking: log-probability / length**this (0 = raw, 1 = per token).
            max_len: longest output in tokens; 0 = twice the longest training target + 5.

        Returns:
            One output per text.
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        return self._use("translate")(texts, beam=beam, length_penalty=length_penalty, max_len=max_len) if texts else []

    def forecast(self, data: str | os.PathLike) -> list[float]:
        """Forecast the values after the end of a CSV: `seqtrain forecast`.

        Args:
            data: a CSV with the model's columns (for sine: a `value` column); its last rows are the input.

        Returns:
            The next `horizon` values of the target, in its own units.
        """
        return self._use("forecast")(Path(data))

    def evaluate(
        self, split: str = "test", *, data: str | os.PathLike | None = None, progress: bool | Console = False
    ) -> dict[str, dict[str, float]]:
        """Score the model on held-out data: `seqtrain evaluate`.

        Args:
            split: `test` or `val`, as the run split its data.
            data: where the data is, if not where the run found it.
            progress: show a progress bar (True, or on this `rich.console.Console`).

        Returns:
            Rows of metrics: the model's on `split` first, then the task's reference rows (e.g. `naive test`,
            `uniform`).
        """
        from seqtrain.inference import evaluate_trained

        return evaluate_trained(self.trained, split, None if data is None else os.fspath(data), console_of(progress))

