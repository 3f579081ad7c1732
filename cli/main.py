"""The `seqtrain` command: parse, build a config, call the library."""

from __future__ import annotations

import functools
import os
import sys
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from seqtrain import api
from seqtrain.errors import SeqtrainError
from seqtrain_cli.options import SummaryCommand, TaskCommand, with_settings

app = typer.Typer(
    name="seqtrain",
    help="Train recurrent sequence models (RNN, LSTM, GRU) from the command line.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
errors = Console(stderr=True)

#: commands that only run a trained model: they load the compiled recurrent loop where it is built, never wait for a build
RUN_ONLY_COMMANDS = {
    "evaluate", "predict", "forecast", "translate", "generate", "summary", "similar", "analogy", "tasks", "tag", "transcribe",
}


def show_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"seqtrain {version('seqtrain')}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", callback=show_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """Train recurrent sequence models (RNN, LSTM, GRU) from the command line."""
    if ctx.invoked_subcommand in RUN_ONLY_COMMANDS:
        from seqtrain.models.fused_loop import use_prebuilt_only

        use_prebuilt_only()


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
            errors.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2)
        except KeyboardInterrupt:
            errors.print("[yellow]aborted[/]")
            raise typer.Exit(130)
        except OSError as exc:
            if os.environ.get("SEQTRAIN_DEBUG"):
                raise
            where = f": {exc.filename}" if exc.filename else ""
            errors.print(f"[bold red]error:[/] {escape(str(exc.strerror or exc) + where)} (run with SEQTRAIN_DEBUG=1 for the traceback)",
                         highlight=False, soft_wrap=True)
            raise typer.Exit(1)

    return wrapper


def use_threads(threads: int) -> None:
    """Check --threads of the commands that run a trained model before any input is read; the count is set where
    the model loads (load_trained)."""
    from seqtrain.inference import check_threads

    check_threads(threads)


RunArg = Annotated[Optional[str], typer.Argument(help="A run folder, a checkpoint file, or a run name under --logdir [default: latest].")]
LogdirOpt = Annotated[str, typer.Option("--logdir", help="Folder that holds the run directories.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
ThreadsOpt = Annotated[int, typer.Option("--threads", help="CPU threads for torch; 0 chooses from the model (1 for every default model: fastest when other jobs share the cores).")]


#: what a bare `seqtrain fit` is about to do (a 2-core CPU's time, download included; docs/first-run.md)
DEFAULT_FIT = (
    "No --task given: training the default task, imdb (IMDB review sentiment, 3 epochs), on its 84 MB download "
    "(cached for later runs): about 10 minutes on a 2-core CPU. Ctrl-C stops it. "
    "A one-minute first run: seqtrain fit --task sine"
)


@app.command(cls=TaskCommand)
@friendly
@with_settings("train", "model", "data")
def fit(
    task: Annotated[Optional[str], typer.Option("--task", "-t", help="What to train: see `seqtrain tasks`; `seqtrain fit --task T --help` lists T's flags and defaults.", show_default="imdb")] = None,
    config_file: Annotated[Optional[Path], typer.Option("--config", help="Re-run the settings of a run's config.toml; flags override them.")] = None,
    resume: Annotated[Optional[Path], typer.Option("--resume", help="Continue an interrupted run folder from its last checkpoint.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    print_config: Annotated[bool, typer.Option("--print-config", help="Print the run's config.toml and exit without training.")] = False,
    overrides: dict | None = None,
) -> None:
    """Train a model; writes checkpoints, TensorBoard events and metrics.json into a new run folder.

    The flags shown are those of the task given with --task (default imdb), with its defaults.
    """
    from seqtrain.tasks import make_task

    chosen, run = api.settings_for(task, config_file, resume, overrides or {})
    if print_config:
        typer.echo(make_task(chosen).config.to_toml(), nl=False)
        return
    if not (task or config_file or resume or quiet):
        console.print(DEFAULT_FIT, highlight=False, markup=False, soft_wrap=True)
    if getattr(chosen.data, "folds", 0) > 1 and run is None:
        from seqtrain.crossval import cross_validate

        results = cross_validate(chosen, None if quiet else console)[1]
        if results[-1].interrupted:
            raise typer.Exit(130)
        return
    result = api.fit(task, config=config_file, resume=resume, progress=not quiet and console, **(overrides or {}))
    if result.interrupted:  # so `seqtrain fit ... && next-step` does not carry on
        raise typer.Exit(130)


@app.command(cls=TaskCommand)
@friendly
@with_settings("train", "model", "data")
def tune(
    task: Annotated[Optional[str], typer.Option("--task", "-t", help="What to tune; the task's other flags stay fixed in every trial.", show_default="imdb")] = None,
    trials: Annotated[int, typer.Option("--trials", help="Finished (complete or pruned) trials the study runs to.")] = 20,
    timeout: Annotated[Optional[float], typer.Option("--timeout", help="Stop starting trials after this many seconds.")] = None,
    param: Annotated[Optional[list[str]], typer.Option("--param", help="A searched setting, repeatable: lr=log:1e-4:1e-2, hidden=int:32:256, dropout=float:0:0.5, cell=choice:lstm,gru.")] = None,
    space: Annotated[Optional[Path], typer.Option("--space", help="A TOML file of searched settings (name = \"KIND:...\"), replacing the family's default space.")] = None,
    study: Annotated[Optional[str], typer.Option("--study", help="Name of a new study (default: TASK-study-TIME).")] = None,
    resume_study: Annotated[Optional[str], typer.Option("--resume", help="Continue this study (after Ctrl-C or a killed worker) to its --trials.")] = None,
    show: Annotated[Optional[str], typer.Option("--show", help="Rank this study's trials and exit.")] = None,
    workers: Annotated[int, typer.Option("--workers", help="Processes running trials of the study on this machine.")] = 1,
    storage: Annotated[Optional[str], typer.Option("--storage", help="A database URL (e.g. postgresql://...) that several machines share (default: SQLite in the study folder).")] = None,
    pruner: Annotated[str, typer.Option("--pruner", help="Stop unpromising trials early on their per-epoch validation score: median or none.")] = "median",
    worker: Annotated[int, typer.Option("--worker", hidden=True)] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    overrides: dict | None = None,
) -> None:
    """Search a task's settings with Optuna: each trial a run folder under <logdir>/<study>/, scored on validation;
    the best one's config.toml re-runs with `fit --config`, its test split scored once."""
    from seqtrain import tuning

    out = None if quiet else console
    logdir = (overrides or {}).get("logdir", "runs")
    if workers < 1:
        raise SeqtrainError(f"--workers must be at least 1, not {workers}")
    if show:
        tuning.show(show, logdir, storage, console)
    elif resume_study:
        tuning.resume(resume_study, logdir, timeout, workers, storage, out, worker)
    else:
        tuning.tune(task or "imdb", overrides or {}, trials, timeout, param or [], space, study, storage, workers, pruner, out)


@app.command()
@friendly
def build() -> None:
    """Compile the fused layers' recurrent loop for this install now (about a minute, once), so no command waits for it."""
    from seqtrain.models.fused_loop import build as build_loop

    typer.echo(f"the compiled recurrent loop is ready in {build_loop()}")


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
    from seqtrain.tasks import task_class
    from seqtrain.training.progress import metrics_tables

    model = api.load(run, logdir=logdir, device=device, threads=threads)
    rows = model.evaluate(split, data=data, progress=console)
    for table in metrics_tables(escape(f"{model.task}: {model.checkpoint}"), rows, task_class(model.task).metric_names):
        console.print(table)


def read_texts(texts: list[str] | None, file: Path | None) -> list[str]:
    """Texts from arguments, a file (one per line), or stdin ('-' or piped input); blank lines dropped.

    Read as fit reads its files: strict UTF-8 (bytes that are not text are refused in one line, never
    replaced), lines split at line feeds only."""
    lines = list(texts or [])
    if file is not None:
        if not file.is_file():
            raise SeqtrainError(f"--file {file} does not exist")
        lines += utf8_lines(file.read_bytes(), f"--file {file}")
    if lines == ["-"] or (not lines and not sys.stdin.isatty()):
        lines = utf8_lines(sys.stdin.buffer.read(), "stdin")
    return [line for line in lines if line.strip() and line != "-"]


def utf8_lines(raw: bytes, where: str) -> list[str]:
    """The lines of UTF-8 `raw`, refused in one line naming `where` and the line when it is not UTF-8."""
    from seqtrain.data.streams import text_lines

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SeqtrainError(f"{where} line {line}: byte 0x{raw[exc.start:exc.start + 1].hex()} is not valid UTF-8; "
                            "give UTF-8 text (as fit reads it)") from None
    return text_lines(text)


def printable(text: str) -> str:
    """`text` with control characters and line or paragraph separators written as escapes, so that echoing
    input never drives the terminal or breaks a tab-separated line."""
    return "".join(repr(c)[1:-1] if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in text)


def run_or_first_text(run: str | None, texts: list[str] | None, logdir: str) -> tuple[str | None, list[str] | None]:
    """`translate`/`tag`'s optional RUN: an argument naming no run (a folder, checkpoint or name under --logdir)
    is the first text, and the latest run is used."""
    from seqtrain.training.runs import follow_latest

    if run is not None and not (follow_latest(Path(run)).exists() or follow_latest(Path(logdir) / run).exists()):
        return None, [run, *(texts or [])]
    return run, texts


def load_run_for(run: str | None, logdir: str, device: str, ability: str, threads: int):
    """The run's task (metadata loaded) and model, refusing runs whose task does not do `ability`: for a command
    that calls its task's method itself rather than through `api.Model`."""
    trained = api.load(run, logdir=logdir, device=device, threads=threads).trained
    return trained.require(ability), trained


@app.command()
@friendly
def predict(
    run: Annotated[str, typer.Argument(help="A run folder, a checkpoint file, a run name under --logdir, or 'latest'.")],
    texts: Annotated[Optional[list[str]], typer.Argument(help="Texts to classify ('-' reads one per line from stdin); for sequence and audio models, files (.ts, .csv, .npy, .wav).")] = None,
    file: Annotated[Optional[Path], typer.Option("--file", "-f", help="Read texts from a file, one per line.")] = None,
    top_k: Annotated[int, typer.Option("--top-k", help="Show the K most likely labels (one-label models).")] = 1,
    threshold: Annotated[Optional[float], typer.Option("--threshold", help="Multi-label models: show every label at least this likely [default: the run's].")] = None,
    logdir: LogdirOpt = "runs",
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = 0,
) -> None:
    """Classify texts with a trained model: prints label(s), probability(ies) and the text, tab-separated
    (a regression model of sequences: the predicted number and the sequence's name).

    Several labels (--top-k, or a multi-label model) are comma-separated in the first column, their
    probabilities in the second, most likely first; '-' where no label reaches the threshold.
    """
    use_threads(threads)
    lines = read_texts(texts, file)
    if not lines:
        raise SeqtrainError("no text to classify: pass texts, --file FILE, or '-' with text on stdin")
    task, trained = load_run_for(run, logdir, device, "predict", threads)
    if hasattr(task, "predict_files"):  # sequence and audio models: each argument is a file of one or more sequences
        named = task.predict_files(trained.model, lines, trained.device, top_k)
    else:
        named = zip(lines, task.predict(trained.model, lines, trained.device, top_k, threshold))
    for text, predictions in named:
        shown = text if len(text) <= 70 or not sys.stdout.isatty() else text[:67] + "..."  # a file or pipe gets it all
        if isinstance(predictions, float):  # a regression model's number
            typer.echo(f"{predictions:.6g}\t{printable(shown)}")
            continue
        labels = ",".join(p.label for p in predictions) or "-"
        probabilities = ",".join(f"{p.probability:.3f}" for p in predictions) or "-"
        typer.echo(f"{labels}\t{probabilities}\t{printable(shown)}")  # tab-separated, for pipes


@app.command()
@friendly
def forecast(
    run: RunArg = None,
    data: Annotated[Path, typer.Option("--data", help="CSV with the model's columns (for sine: a 'value' column); its last rows are the input.")] = ...,
    logdir: LogdirOpt = "runs",
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = 0,
) -> None:
    """Forecast the values after the end of a CSV with a trained forecasting model: one 'time<TAB>value' line each
    (the times after the CSV's last, at its own step, for a run with --time-col; else steps 1, 2, ...)."""
    use_threads(threads)
    model = api.load(run, logdir=logdir, device=device, threads=threads)
    values = model.forecast(data)
    times = model.trained.task.forecast_times(data) or range(1, len(values) + 1)
    for when, value in zip(times, values):
        typer.echo(f"{when}\t{value:.6g}")  # tab-separated, for pipes


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
    run, texts = run_or_first_text(run, texts, logdir)
    lines = read_texts(texts, file)
    if not lines:
        raise SeqtrainError("no text to translate: pass texts, --file FILE, or '-' with text on stdin")
    model = api.load(run, logdir=logdir, device=device, threads=threads)
    for output in model.translate(lines, beam=beam, length_penalty=length_penalty, max_len=max_len):
        console.print(output, highlight=False, markup=False, soft_wrap=True)


@app.command()
@friendly
def tag(
    run: Annotated[Optional[str], typer.Argument(help="A run folder, checkpoint or run name under --logdir [default: latest]; if it names none, it is taken as the first text.")] = None,
    texts: Annotated[Optional[list[str]], typer.Argument(help="Sentences to tag; '-' reads one per line from stdin.")] = None,
    file: Annotated[Optional[Path], typer.Option("--file", "-f", help="Read sentences from a file, one per line (with --tokens: one token a line).")] = None,
    tokens: Annotated[bool, typer.Option("--tokens", help="The input is already tokenised: one token a line (the first column), a blank line between sentences.")] = False,
    output: Annotated[str, typer.Option("--format", help="conll: token<TAB>tag lines; spans: one entity a line; json: one object a sentence.")] = "conll",
    logdir: LogdirOpt = "runs",
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = 0,
) -> None:
    """Tag sentences with a trained tagger: each token with its tag (in the training data's scheme), or the entities."""
    use_threads(threads)
    from seqtrain.data.conll import tokenize_sentence
    from seqtrain.tasks.tagging import render, token_sentences

    if output not in ("conll", "spans", "json"):
        raise SeqtrainError(f"--format must be conll, spans or json, not '{output}'")
    run, texts = run_or_first_text(run, texts, logdir)
    if tokens:
        if file is not None and not file.is_file():
            raise SeqtrainError(f"--file {file} does not exist")
        lines = (utf8_lines(file.read_bytes(), f"--file {file}") if file
                 else list(texts or []) or utf8_lines(sys.stdin.buffer.read(), "stdin"))
        sentences = token_sentences(lines)
    else:
        sentences = [tokenize_sentence(line) for line in read_texts(texts, file)]
    if not sentences:
        raise SeqtrainError("no text to tag: pass sentences, --file FILE, or '-' with text on stdin")
    task, trained = load_run_for(run, logdir, device, "tag", threads)
    for words, tags in zip(sentences, task.tag(trained.model, sentences, trained.device)):
        typer.echo(render(words, tags, output, task.meta.scheme == "plain"))


@app.command()
@friendly
def transcribe(
    run: Annotated[str, typer.Argument(help="A CTC run (ctc, digits): folder, checkpoint, run name under --logdir, or 'latest'.")],
    files: Annotated[list[str], typer.Argument(help="WAV files to transcribe.")],
    beam: Annotated[int, typer.Option("--beam", "-k", help="Prefix beam width; 1 decodes greedily [default: the run's --beam].")] = 0,
    logdir: LogdirOpt = "runs",
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = 0,
) -> None:
    """Transcribe WAV files with a trained CTC model: one 'transcript<TAB>file' line each."""
    use_threads(threads)
    if beam < 0:
        raise SeqtrainError(f"--beam must be 1 or more, not {beam}")
    task, trained = load_run_for(run, logdir, device, "transcribe", threads)
    for name, text in task.transcribe(trained.model, files, trained.device, beam or None):
        typer.echo(f"{text}\t{name}")  # tab-separated, for pipes


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

    if run is None:
        run = str(latest_run_of(logdir, {name for name, cls in REGISTRY.items() if cls.ability == "generate"}))
    model = api.load(run, logdir=logdir, device=device, threads=threads)
    stream(model.generate(prime, length=length, temperature=temperature, top_k=top_k, seed=seed, stream=True))


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
    table = Table(title=escape(f"{type(model).__name__} ({task_obj.name}); shapes for one example batch"), title_justify="left")
    table.add_column("Layer (type)")
    table.add_column("Output shape")
    table.add_column("Param #", justify="right")
    for row in result.rows:
        table.add_row(escape(f"{row.name} ({row.kind})"), escape(row.output_shape), f"{row.params:,}")
    console.print(table)
    for note in result.notes:
        console.print(note, soft_wrap=True, markup=False)
    console.print(f"Total params: {result.total:,}")
    console.print(f"Trainable params: {result.trainable:,}")
    console.print(f"Non-trainable params: {result.total - result.trainable:,}")


@app.command()
def tasks() -> None:
    """List the tasks `seqtrain fit --task` knows, with the defaults each one sets."""
    table = Table(title="tasks (seqtrain fit --task T --help lists T's flags)")
    table.add_column("task")
    table.add_column("what it trains")
    table.add_column("its defaults")
    for name, info in api.list_tasks().items():
        table.add_row(escape(name), escape(info.description), escape(", ".join(f"{k}={v}" for k, v in info.defaults.items())))
    console.print(table)


from seqtrain_cli import deploy  # noqa: E402,F401  (registers `export` and `serve`)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
