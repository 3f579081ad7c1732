"""`seqtrain export` and `seqtrain serve`: a trained run used outside the trainer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

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
        sidecar = export_run(checkpoint, fmt, folder, force, quantize, allow_quantize_drop=force)
    except ImportError as exc:
        raise missing_extra("export", exc) from None
    parity = sidecar["parity"]
    files = ", ".join(graph["file"] for graph in sidecar["graphs"].values())
    console.print(f"exported {sidecar['task']} ({sidecar['family']}) to {folder}: {files}, seqtrain.json", highlight=False)
    console.print(f"parity with PyTorch on {parity['samples']} test samples: max |diff| {parity['max_abs_diff']:.2e} "
                  f"(tolerance {parity['tolerance']:g})", highlight=False)
    quantized = sidecar.get("quantized")
    if quantized:
        console.print(quantized["summary"], highlight=False)
