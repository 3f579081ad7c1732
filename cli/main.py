"""The `seqtrain` command: parse, build a config, call the library."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from seqtrain.errors import SeqtrainError
from seqtrain_cli.options import SummaryCommand, TaskCommand, with_settings

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
    """Turn user mistakes and faults of the environment into one line on stderr, never a traceback.

    A user mistake exits 2; an unexpected OSError (a full or read-only disk, a
    permission) exits 1 with one line too, unless SEQTRAIN_DEBUG=1 asks for the traceback.
    """

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
        except OSError as exc:
            if os.environ.get("SEQTRAIN_DEBUG"):
                raise
            where = f": {exc.filename}" if exc.filename else ""
            errors.print(f"[bold red]error:[/] {exc.strerror or exc}{where} (run with SEQTRAIN_DEBUG=1 for the traceback)",
                         highlight=False, soft_wrap=True)
            raise typer.Exit(1)

    return wrapper


def use_threads(threads: int) -> None:
    """Check --threads of the commands that run a trained model; the count is set where the model loads (load_trained)."""
    if threads < 0:
        raise SeqtrainError(f"--threads must be 0 (chosen from the model) or positive, not {threads}")


RunArg = Annotated[Optional[str], typer.Argument(help="A run folder, a checkpoint file, or a run name under --logdir [default: latest].")]
LogdirOpt = Annotated[str, typer.Option("--logdir", help="Folder that holds the run directories.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
ThreadsOpt = Annotated[int, typer.Option("--threads", help="CPU threads for torch; 0 chooses from the model (1 for every default model: fastest when other jobs share the cores).")]


#: what `--resume` may change: how long to train, where, and where the data is now
RESUMABLE = {
    "epochs", "device", "patience", "threads", "data", "data_dir", "cache_dir", "mirror", "save_every", "max_bad_steps",
}


@app.command(cls=TaskCommand)
@friendly
@with_settings("train", "model", "data")
def fit(
    task: Annotated[Optional[str], typer.Option("--task", "-t", help="What to train: see `seqtrain tasks`; `seqtrain fit --task T --help` lists T's flags and defaults.", show_default="imdb")] = None,
    config_file: Annotated[Optional[Path], typer.Option("--config", help="Re-run the settings of a run's config.toml; flags override them.")] = None,
    resume: Annotated[Optional[Path], typer.Option("--resume", help="Continue an interrupted run folder from its last checkpoint.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    overrides: dict | None = None,
) -> None:
    """Train a model; writes checkpoints, TensorBoard events and metrics.json into a new run folder.

    The flags shown are those of the task given with --task (default imdb), with its defaults.
    """
    from seqtrain.tasks import build_config, config_from_dict, make_task, read_config
    from seqtrain.training.runs import follow_latest, resolve_checkpoint, resume_point
    from seqtrain.training.trainer import Trainer

    if resume is not None:
        if task or config_file:
            raise SeqtrainError("--resume continues a run with its own task and settings: drop --task and --config")
        run = resolve_checkpoint(str(resume), prefer="last.pt").parent
        config = config_from_dict(resume_point(run)[1]["config"])
        ignored = sorted(set(overrides) - RESUMABLE)
        if ignored:
            flags = ", ".join("--" + name.replace("_", "-") for name in ignored)
            raise SeqtrainError(f"--resume keeps the run's settings; drop {flags} (only epochs, device, patience, threads, save-every, max-bad-steps and data locations may change)")
        config.update(overrides)
    elif config_file is not None:
        config = read_config(follow_latest(config_file))
        if task and task != config.task:
            raise SeqtrainError(f"{config_file} is a '{config.task}' config; drop --task {task} or use another file")
        config.update(overrides)
        run = None
    else:
        config = build_config(task or "imdb", overrides)
        run = None
    result = Trainer(make_task(config), None if quiet else console).fit(resume=run)
    if result.interrupted:  # so `seqtrain fit ... && next-step` does not carry on
        raise typer.Exit(130)


@app.command()
@friendly
def evaluate(
    run: RunArg = None,
    split: Annotated[str, typer.Option("--split", help="test or val.")] = "test",
    data: Annotated[Optional[str], typer.Option("--data", "--data-dir", help="Where the data is, if not where the run found it.")] = None,
    logdir: LogdirOpt = "runs",
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = 0,
) -> None:
    """Score a trained model on the held-out data (its best checkpoint by default)."""
    use_threads(threads)
    from seqtrain.inference import evaluate_checkpoint
    from seqtrain.training.progress import metrics_table
    from seqtrain.training.runs import resolve_checkpoint

    checkpoint = resolve_checkpoint(run, logdir)
    if split not in ("test", "val"):
        raise SeqtrainError(f"--split must be test or val, not '{split}'")
    rows, config = evaluate_checkpoint(checkpoint, split, device, data, console, threads)
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


def load_run_for(run: str | None, logdir: str, device: str, ability: str, threads: int):
    """The run's task (metadata loaded) and model, refusing runs whose task does not do `ability`."""
    from seqtrain.inference import load_trained
    from seqtrain.training.runs import resolve_checkpoint

    trained = load_trained(resolve_checkpoint(run, logdir), device, threads)
    return trained.require(ability), trained


@app.command()
@friendly
def predict(
    run: Annotated[str, typer.Argument(help="A run folder, a checkpoint file, a run name under --logdir, or 'latest'.")],
    texts: Annotated[Optional[list[str]], typer.Argument(help="Texts to classify; '-' reads one per line from stdin.")] = None,
    file: Annotated[Optional[Path], typer.Option("--file", "-f", help="Read texts from a file, one per line.")] = None,
    top_k: Annotated[int, typer.Option("--top-k", help="Show the K most likely labels (one-label models).")] = 1,
    threshold: Annotated[Optional[float], typer.Option("--threshold", help="Multi-label models: show every label at least this likely [default: the run's].")] = None,
    logdir: LogdirOpt = "runs",
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = 0,
) -> None:
    """Classify texts with a trained model: prints label(s), probability(ies) and the text, tab-separated.

    Several labels (--top-k, or a multi-label model) are comma-separated in the first column, their
    probabilities in the second, most likely first; '-' where no label reaches the threshold.
    """
    use_threads(threads)
    if top_k < 1:
        raise SeqtrainError(f"--top-k must be at least 1, not {top_k}")
    if threshold is not None and not 0 <= threshold <= 1:
        raise SeqtrainError(f"--threshold must be between 0 and 1, not {threshold}")
    lines = read_texts(texts, file)
    if not lines:
        raise SeqtrainError("no text to classify: pass texts, --file FILE, or '-' with text on stdin")
    task, trained = load_run_for(run, logdir, device, "predict", threads)
    for text, predictions in zip(lines, task.predict(trained.model, lines, trained.device, top_k, threshold)):
        shown = text if len(text) <= 70 else text[:67] + "..."
        labels = ",".join(p.label for p in predictions) or "-"
        probabilities = ",".join(f"{p.probability:.3f}" for p in predictions) or "-"
        typer.echo(f"{labels}\t{probabilities}\t{shown}")  # tab-separated, for pipes


@app.command()
@friendly
def forecast(
    run: RunArg = None,
    data: Annotated[Path, typer.Option("--data", help="CSV with the model's columns (for sine: a 'value' column); its last rows are the input.")] = ...,
    logdir: LogdirOpt = "runs",
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = 0,
) -> None:
    """Forecast the values after the end of a CSV with a trained forecasting model: one 'step<TAB>value' line each."""
    use_threads(threads)
    task, trained = load_run_for(run, logdir, device, "forecast", threads)
    for step, value in enumerate(task.forecast(trained.model, data, trained.device), start=1):
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
    threads: ThreadsOpt = 0,
) -> None:
    """Translate texts with a trained seq2seq run: prints one output per input line."""
    use_threads(threads)
    from seqtrain.training.runs import follow_latest

    if run is not None and not (follow_latest(Path(run)).exists() or follow_latest(Path(logdir) / run).exists()):
        texts, run = [run, *(texts or [])], None
    lines = read_texts(texts, file)
    if not lines:
        raise SeqtrainError("no text to translate: pass texts, --file FILE, or '-' with text on stdin")
    task, trained = load_run_for(run, logdir, device, "translate", threads)
    for output in task.translate(trained.model, lines, trained.device, beam, length_penalty, max_len):
        console.print(output, highlight=False, markup=False, soft_wrap=True)


#: how often `generate` writes what it has sampled: still a stream to the eye, but one write per few hundred
#: characters instead of one each (a write and flush per character cost about a tenth of the generation time)
STREAM_SECONDS = 0.05


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
    threads: ThreadsOpt = 0,
) -> None:
    """Sample text from a trained language model, streamed as it is produced (one recurrent step per token)."""
    use_threads(threads)
    from seqtrain.tasks import REGISTRY
    from seqtrain.training.runs import latest_run_of

    if length < 0:
        raise SeqtrainError(f"--length must be 0 or more, not {length}")
    if run is None:
        run = str(latest_run_of(logdir, {name for name, cls in REGISTRY.items() if cls.ability == "generate"}))
    task, trained = load_run_for(run, logdir, device, "generate", threads)
    stream(task.generate(trained.model, prime, length, temperature, top_k, seed))


def stream(pieces: Iterable[str]) -> None:
    """Echo text as it is produced, gathered into one write per STREAM_SECONDS, then a line break."""
    from seqtrain.generation import gathered

    for chunk in gathered(pieces, STREAM_SECONDS):
        typer.echo(chunk, nl=False)
    typer.echo("")


VectorsArg = Annotated[str, typer.Argument(help="Word vectors: a word2vec or classifier run (folder or checkpoint), a GloVe/word2vec text or binary file, or glove.6B.<d>d.")]
CacheOpt = Annotated[Optional[str], typer.Option("--cache-dir", help="Cache for parsed and downloaded vectors (default: $SEQTRAIN_CACHE or ~/.cache/seqtrain).")]
MirrorOpt = Annotated[Optional[str], typer.Option("--mirror", help="Base URL or folder to download glove.6B.zip from.")]


@app.command()
@friendly
def similar(
    vectors: VectorsArg,
    word: Annotated[str, typer.Argument(help="The word whose neighbours to list.")],
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="How many neighbours.")] = 10,
    cache_dir: CacheOpt = None,
    mirror: MirrorOpt = None,
) -> None:
    """The words nearest to WORD by cosine similarity: one 'word<TAB>cosine' line each."""
    from seqtrain.similarity import explore

    for neighbour, score in explore(vectors, cache_dir, mirror).similar(word, top_k):
        typer.echo(f"{neighbour}\t{score:.4f}")


@app.command()
@friendly
def analogy(
    vectors: VectorsArg,
    a: Annotated[str, typer.Argument(help="A in 'A is to B as C is to ?' (man)")],
    b: Annotated[str, typer.Argument(help="B (king)")],
    c: Annotated[str, typer.Argument(help="C (woman)")],
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="How many answers.")] = 1,
    cache_dir: CacheOpt = None,
    mirror: MirrorOpt = None,
) -> None:
    """Words nearest to B - A + C, leaving out A, B and C (gensim's rule): 'man king woman' gives queen."""
    from seqtrain.similarity import explore

    for answer, score in explore(vectors, cache_dir, mirror).analogy(a, b, c, top_k):
        typer.echo(f"{answer}\t{score:.4f}")


@app.command(cls=SummaryCommand)
@friendly
@with_settings("model", "data")
def summary(
    run: RunArg = None,
    task: Annotated[Optional[str], typer.Option("--task", "-t", help="Summarise a fresh model of this task instead of a run.")] = None,
    logdir: LogdirOpt = "runs",
    overrides: dict | None = None,
) -> None:
    """A Keras-style table of layers, output shapes and parameter counts."""
    from seqtrain.inference import load_trained
    from seqtrain.models.summary import summarize
    from seqtrain.tasks import build_config, make_task
    from seqtrain.training.runs import resolve_checkpoint

    if task is not None:
        task_obj = make_task(build_config(task, overrides))
        model = task_obj.build_model(task_obj.default_meta())
    else:
        if overrides:
            raise SeqtrainError("model flags describe a fresh model: add --task T, or drop them to summarise a run")
        trained = load_trained(resolve_checkpoint(run, logdir), "cpu")
        task_obj, model = trained.task, trained.model
    result = summarize(model, *task_obj.example_input(model))
    table = Table(title=f"{type(model).__name__} ({task_obj.name}); shapes for one example batch", title_justify="left")
    table.add_column("Layer (type)")
    table.add_column("Output shape")
    table.add_column("Param #", justify="right")
    for row in result.rows:
        table.add_row(f"{row.name} ({row.kind})", row.output_shape, f"{row.params:,}")
    console.print(table)
    for note in result.notes:
        console.print(note, soft_wrap=True)
    console.print(f"Total params: {result.total:,}")
    console.print(f"Trainable params: {result.trainable:,}")
    console.print(f"Non-trainable params: {result.total - result.trainable:,}")


@app.command()
def tasks() -> None:
    """List the tasks `seqtrain fit --task` knows, with the defaults each one sets."""
    from seqtrain.tasks import REGISTRY

    table = Table(title="tasks (seqtrain fit --task T --help lists T's flags)")
    table.add_column("task")
    table.add_column("what it trains")
    table.add_column("its defaults")
    for name, cls in sorted(REGISTRY.items()):
        table.add_row(name, cls.description, ", ".join(f"{k}={v}" for k, v in cls.defaults.items()))
    console.print(table)


from seqtrain_cli import deploy  # noqa: E402,F401  (registers `export` and `serve`)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
