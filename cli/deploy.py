"""`seqtrain export` and `seqtrain serve`: a trained run used outside the trainer."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from seqtrain.errors import SeqtrainError
from seqtrain_cli.main import LogdirOpt, app, console, friendly


def missing_extra(extra: str, exc: ImportError) -> SeqtrainError:
    return SeqtrainError(f"{exc.name} is not installed: pip install 'seqtrain[{extra}]'")


@app.command(name="export")
@friendly
def export_command(
    run: Annotated[str, typer.Argument(help="A run folder, a checkpoint file, a run name under --logdir, or 'latest'.")],
    fmt: Annotated[str, typer.Option("--format", help="onnx (run with onnxruntime) or torchscript (torch.jit.load).")] = "onnx",
    out: Annotated[Optional[Path], typer.Option("--out", help="Folder for the graphs and seqtrain.json [default: RUN/export-FORMAT].")] = None,
    quantize: Annotated[Optional[str], typer.Option("--quantize", help="int8: dynamic int8 quantization of the recurrent and linear layers, scored on the test split.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite a non-empty --out; keep an int8 export whose test metric dropped past the limit.")] = False,
    logdir: LogdirOpt = "runs",
) -> None:
    """Export a trained run's model with a JSON sidecar; its outputs are checked against PyTorch on test batches."""
    from seqtrain.training.runs import resolve_checkpoint

    if quantize not in (None, "int8"):
        raise SeqtrainError(f"--quantize takes int8, not '{quantize}'")
    try:
        from seqtrain.export import export_run

        checkpoint = resolve_checkpoint(run, logdir)
        folder = out or checkpoint.parent / f"export-{fmt}{'-int8' if quantize else ''}"
        sidecar = export_run(checkpoint, fmt, folder, force, quantize)
    except ImportError as exc:
        raise missing_extra("export", exc) from None
    parity = sidecar["parity"]
    files = ", ".join(graph["file"] for graph in sidecar["graphs"].values())
    console.print(f"exported {sidecar['task']} ({sidecar['family']}) to {folder}: {files}, seqtrain.json",
                  highlight=False, markup=False)
    console.print(f"parity with PyTorch on {parity['samples']} test samples: max |diff| {parity['max_abs_diff']:.2e} "
                  f"(tolerance {parity['tolerance']:g})", highlight=False, markup=False)
    quantized = sidecar.get("quantized")
    if quantized:
        console.print(quantized["summary"], highlight=False)


@app.command()
@friendly
def serve(
    runs: Annotated[list[str], typer.Argument(help="Runs to serve: a run folder, checkpoint or run name under --logdir; NAME=RUN names its route /v1/NAME/...")],
    host: Annotated[str, typer.Option("--host", help="Address to bind; anything but loopback wants --token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
    max_batch: Annotated[int, typer.Option("--max-batch", help="Most inputs merged into one model call; 1 turns batching off.")] = 32,
    max_wait_ms: Annotated[float, typer.Option("--max-wait-ms", help="Longest a request waits for others to share its model call.")] = 5.0,
    token: Annotated[Optional[str], typer.Option("--token", envvar="SEQTRAIN_TOKEN", help="Require 'Authorization: Bearer TOKEN' on /v1 routes and /metrics.")] = None,
    workers: Annotated[int, typer.Option("--workers", help="Server processes, each with its own copy of the models.")] = 1,
    threads: Annotated[int, typer.Option("--threads", help="torch CPU threads per worker.")] = 1,
    logdir: LogdirOpt = "runs",
) -> None:
    """Serve trained runs over HTTP: POST /v1/NAME/{predict,generate,translate,forecast}, GET /health, /metrics, /docs."""
    from seqtrain.training.runs import resolve_checkpoint

    if max_batch < 1 or max_wait_ms < 0 or workers < 1 or threads < 1:
        raise SeqtrainError("--max-batch, --workers and --threads must be at least 1 and --max-wait-ms at least 0")
    named = {}
    for spec in runs:
        name, _, where = spec.rpartition("=") if "=" in spec else ("", "", spec)
        checkpoint = resolve_checkpoint(where, logdir)
        named[name or checkpoint.parent.name] = str(checkpoint)
    try:
        import uvicorn

        from seqtrain.serving.app import ServeSettings, settings_to_environment
    except ImportError as exc:
        raise missing_extra("serve", exc) from None
    if host not in ("127.0.0.1", "localhost", "::1") and not token:
        console.print(f"[yellow]warning:[/] serving on {escape(host)} without --token: anyone who reaches the port can use it")
    settings_to_environment(ServeSettings(named, max_batch, max_wait_ms, token, threads))
    console.print(f"serving {', '.join(f'/v1/{n}' for n in named)} on http://{host}:{port} (docs: /docs)",
                  highlight=False, markup=False)
    # uvicorn drains in-flight requests on SIGTERM, then raises the signal again once its own handler is gone:
    # with this one in place that ends in an orderly exit 0, the status a service manager expects from a stop.
    signal.signal(signal.SIGTERM, lambda *_: None)
    uvicorn.run("seqtrain.serving.app:from_environment", factory=True, host=host, port=port, workers=workers,
                log_level="warning", timeout_graceful_shutdown=30)
