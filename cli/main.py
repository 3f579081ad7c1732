"""The `seqtrain` command: parse, build a config, call the library."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from seqtrain.errors import SeqtrainError
from seqtrain_cli.options import build_config, with_config_options

app = typer.Typer(
    name="seqtrain",
    help="Train recurrent sequence models (RNN, LSTM, GRU) from the command line.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
errors = Console(stderr=True)


def friendly(func):
    """Turn user mistakes into one line on stderr and exit code 2, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except SeqtrainError as exc:
            errors.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2)
        except KeyboardInterrupt:
            errors.print("[yellow]aborted[/]")
            raise typer.Exit(130)

    return wrapper


RunArg = Annotated[Optional[str], typer.Argument(help="A run folder, a checkpoint file, or a run name under --logdir [default: latest].")]
LogdirOpt = Annotated[str, typer.Option("--logdir", help="Folder that holds the run directories.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]


@app.command()
@friendly
@with_config_options("model", "train", "data")
def fit(
    task: Annotated[str, typer.Option("--task", "-t", help="What to train: see `seqtrain tasks`.")] = "imdb",
    resume: Annotated[Optional[Path], typer.Option("--resume", help="Continue an interrupted run folder from its last checkpoint.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    overrides: dict | None = None,
) -> None:
    """Train a model; writes checkpoints, TensorBoard events and metrics.json into a new run folder."""
    from seqtrain.tasks import get_task
    from seqtrain.training.runs import config_of, resolve_checkpoint
    from seqtrain.training.trainer import Trainer

    if resume is not None:
        checkpoint = resolve_checkpoint(str(resume), prefer="last.pt")
        config = config_of(checkpoint)
        allowed = {"train.epochs", "train.device", "train.patience", "data.data_dir", "data.cache_dir", "data.mirror"}
        ignored = sorted(set(overrides) - allowed)
        if ignored:
            raise SeqtrainError(f"--resume keeps the run's settings; drop {', '.join(ignored)} (only epochs, device, patience and data locations may change)")
        config.update(overrides)
        task_obj = get_task(config.task)
        run = checkpoint.parent
    else:
        task_obj = get_task(task)
        config = build_config(task, task_obj.defaults, overrides)
        run = None
    Trainer(task_obj, config, None if quiet else console).fit(resume=run)


@app.command()
@friendly
def evaluate(
    run: RunArg = None,
    split: Annotated[str, typer.Option("--split", help="test or val.")] = "test",
    data_dir: Annotated[Optional[str], typer.Option("--data-dir", help="Where the data is, if not where the run found it.")] = None,
    logdir: LogdirOpt = "runs",
    device: DeviceOpt = "auto",
) -> None:
    """Score a trained model on the held-out data (its best checkpoint by default)."""
    from seqtrain.training.evaluation import evaluate_checkpoint
    from seqtrain.training.progress import metrics_table
    from seqtrain.training.runs import resolve_checkpoint

    checkpoint = resolve_checkpoint(run, logdir)
    if split not in ("test", "val"):
        raise SeqtrainError(f"--split must be test or val, not '{split}'")
    rows, config = evaluate_checkpoint(checkpoint, split, device, data_dir, console)
    console.print(metrics_table(f"{config.task}: {checkpoint}", rows))


def read_texts(texts: list[str] | None, file: Path | None) -> list[str]:
    """Texts from arguments, a file (one per line), or stdin ('-' or piped input); blank lines dropped."""
    lines = list(texts or [])
    if file is not None:
        if not file.is_file():
            raise SeqtrainError(f"--file {file} does not exist")
        lines += file.read_text(encoding="utf-8", errors="replace").splitlines()
    if lines == ["-"] or (not lines and not sys.stdin.isatty()):
        lines = sys.stdin.read().splitlines()
    return [line for line in lines if line.strip() and line != "-"]


def load_run_for(run: str | None, logdir: str, device: str, ability: str, what: str):
    """Load a run's model for a command, refusing runs whose task lacks `ability` (e.g. 'predict')."""
    from seqtrain.tasks import get_task
    from seqtrain.training.evaluation import load_model
    from seqtrain.training.runs import resolve_checkpoint

    model, config, meta, dev = load_model(resolve_checkpoint(run, logdir), device)
    task = get_task(config.task)
    if not hasattr(task, ability):
        raise SeqtrainError(f"a '{config.task}' run does not {what}; `seqtrain --help` lists the command for it")
    return task, model, config, meta, dev


@app.command()
@friendly
def predict(
    run: Annotated[str, typer.Argument(help="A run folder, a checkpoint file, a run name under --logdir, or 'latest'.")],
    texts: Annotated[Optional[list[str]], typer.Argument(help="Texts to classify; '-' reads one per line from stdin.")] = None,
    file: Annotated[Optional[Path], typer.Option("--file", "-f", help="Read texts from a file, one per line.")] = None,
    logdir: LogdirOpt = "runs",
    device: DeviceOpt = "auto",
) -> None:
    """Classify texts with a trained model: prints the label and its probability."""
    lines = read_texts(texts, file)
    if not lines:
        raise SeqtrainError("no text to classify: pass texts, --file FILE, or '-' with text on stdin")
    task, model, _, meta, dev = load_run_for(run, logdir, device, "predict", "classify texts")
    for text, (label, probability) in zip(lines, task.predict(model, meta, lines, dev)):
        shown = text if len(text) <= 70 else text[:67] + "..."
        typer.echo(f"{label}\t{probability:.3f}\t{shown}")  # tab-separated, for pipes


@app.command()
@friendly
def forecast(
    run: RunArg = None,
    data: Annotated[Path, typer.Option("--data", help="CSV with the model's columns (for sine: a 'value' column); its last rows are the input.")] = ...,
    logdir: LogdirOpt = "runs",
    device: DeviceOpt = "auto",
) -> None:
    """Forecast the values after the end of a CSV with a trained forecasting model: one 'step<TAB>value' line each."""
    task, model, config, meta, dev = load_run_for(run, logdir, device, "forecast", "forecast series")
    for step, value in enumerate(task.forecast(model, meta, config, data, dev), start=1):
        typer.echo(f"{step}\t{value:.6g}")  # tab-separated, for pipes


@app.command()
@friendly
def translate(
    run: Annotated[Optional[str], typer.Argument(help="A run folder, checkpoint or run name under --logdir [default: latest]; if it names none, it is taken as the first text.")] = None,
    texts: Annotated[Optional[list[str]], typer.Argument(help="Texts to translate; '-' reads one per line from stdin.")] = None,
    file: Annotated[Optional[Path], typer.Option("--file", "-f", help="Read texts from a file, one per line.")] = None,
    beam: Annotated[int, typer.Option("--beam", "-k", help="Beam width; 1 decodes greedily.")] = 1,
    length_penalty: Annotated[float, typer.Option("--length-penalty", help="Beam ranking: log-probability / length**this (0 = raw, 1 = per token).")] = 1.0,
    max_len: Annotated[int, typer.Option("--max-len", help="Longest output in tokens; 0 = twice the longest training target + 5.")] = 0,
    logdir: LogdirOpt = "runs",
    device: DeviceOpt = "auto",
) -> None:
    """Translate texts with a trained seq2seq run: prints one output per input line."""
    if run is not None and not (Path(run).exists() or (Path(logdir) / run).exists()):
        texts, run = [run, *(texts or [])], None
    lines = read_texts(texts, file)
    if not lines:
        raise SeqtrainError("no text to translate: pass texts, --file FILE, or '-' with text on stdin")
    task, model, _, meta, dev = load_run_for(run, logdir, device, "translate", "translate texts")
    for output in task.translate(model, meta, lines, dev, beam, length_penalty, max_len):
        console.print(output, highlight=False, markup=False, soft_wrap=True)


@app.command()
@friendly
def generate(
    run: Annotated[Optional[str], typer.Argument(help="A run folder, a checkpoint file, or a run name under --logdir (default: the latest language-model run).")] = None,
    prime: Annotated[str, typer.Option("--prime", "-p", help="Text to start from (words for word-level models).")] = "",
    length: Annotated[int, typer.Option("--length", "-n", help="Tokens to generate (characters or words).")] = 500,
    temperature: Annotated[float, typer.Option("--temperature", "-T", help="> 0: below 1 is more conservative, above 1 more varied.")] = 1.0,
    top_k: Annotated[Optional[int], typer.Option("--top-k", help="Sample only among the k most likely tokens.")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed the sampler for repeatable text.")] = None,
    logdir: LogdirOpt = "runs",
    device: DeviceOpt = "auto",
) -> None:
    """Sample text from a trained language model, streamed as it is produced (one recurrent step per token)."""
    from seqtrain.generation import check_sampling, sample
    from seqtrain.tasks import get_task
    from seqtrain.tasks.base import REGISTRY
    from seqtrain.tasks.language_modeling import LanguageModelTask
    from seqtrain.training.evaluation import load_model
    from seqtrain.training.runs import latest_run_of, resolve_checkpoint

    if length < 0:
        raise SeqtrainError(f"--length must be 0 or more, not {length}")
    lm_tasks = {name for name, t in REGISTRY.items() if isinstance(t, LanguageModelTask)}
    checkpoint = resolve_checkpoint(run or str(latest_run_of(logdir, lm_tasks)), logdir)
    model, config, meta, _ = load_model(checkpoint, device)
    task = get_task(config.task)
    if not isinstance(task, LanguageModelTask):
        hint = (
            f'a seq2seq model translates: `seqtrain translate {run} "text"`'
            if hasattr(task, "translate")
            else "pass a language-model run"
        )
        raise SeqtrainError(f"{checkpoint} is a '{config.task}' model, not a language model; {hint}")
    check_sampling(temperature, top_k, len(meta["vocab"]))
    ids = task.encode_prime(meta, prime)
    typer.echo(task.render_prime(meta, prime), nl=False)
    for token in sample(model, ids, length, temperature, top_k, seed):
        typer.echo(task.render(meta, token), nl=False)
    typer.echo()


@app.command()
@friendly
@with_config_options("model", "data")
def summary(
    run: RunArg = None,
    task: Annotated[Optional[str], typer.Option("--task", "-t", help="Summarise a fresh model of this task instead of a run.")] = None,
    logdir: LogdirOpt = "runs",
    overrides: dict | None = None,
) -> None:
    """A Keras-style table of layers, output shapes and parameter counts."""
    from seqtrain.models.summary import summarize
    from seqtrain.tasks import get_task
    from seqtrain.training.evaluation import load_model
    from seqtrain.training.runs import resolve_checkpoint

    if task is not None:
        task_obj = get_task(task)
        config = build_config(task, task_obj.defaults, overrides)
        meta = task_obj.default_meta(config)
        model = task_obj.build_model(config, meta)
    else:
        model, config, meta, _ = load_model(resolve_checkpoint(run, logdir), "cpu")
        task_obj = get_task(config.task)
    result = summarize(model, *task_obj.example_input(model, meta))
    table = Table(title=f"{type(model).__name__} ({config.task}); shapes for one example batch", title_justify="left")
    table.add_column("Layer (type)")
    table.add_column("Output shape")
    table.add_column("Param #", justify="right")
    for row in result.rows:
        table.add_row(f"{row.name} ({row.kind})", row.output_shape, f"{row.params:,}")
    console.print(table)
    console.print(f"Total params: {result.total:,}")
    console.print(f"Trainable params: {result.trainable:,}")
    console.print(f"Non-trainable params: {result.total - result.trainable:,}")


@app.command()
def tasks() -> None:
    """List the tasks `seqtrain fit --task` knows."""
    from seqtrain.tasks.base import REGISTRY
    import seqtrain.tasks  # noqa: F401  (fills the registry)

    table = Table(title="tasks")
    table.add_column("task")
    table.add_column("what it trains")
    for name, task in sorted(REGISTRY.items()):
        table.add_row(name, task.description)
    console.print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
