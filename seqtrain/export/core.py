"""The exporter: graphs from a family adapter, written in a format, checked for parity, described in JSON."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from seqtrain import __version__
from seqtrain.errors import SeqtrainError
from seqtrain.inference import Trained, load_trained
from seqtrain.models.cells import LoopRNN
from seqtrain.models.fused import FusedRecurrent
from seqtrain.tasks.base import Task

#: exported outputs must equal PyTorch's within this, absolute plus relative (|a - b| <= TOL + TOL * |b|), in float32
TOLERANCE = 1e-5
#: the sidecar's name inside the export folder, and the format number a reader checks
SIDECAR, SIDECAR_FORMAT = "seqtrain.json", 1
FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
#: test batches the parity check reads (each gives the graphs one or more samples)
PARITY_BATCHES = 3

#: an exported file run in its own runtime: numpy arrays in, numpy arrays out
Runner = Callable[[tuple[np.ndarray, ...]], list[np.ndarray]]


@dataclass
class Graph:
    """One exported function: a module taking and returning tensors only, and the samples that check it.

    `dynamic` names the axes that vary ({"tokens": {0: "batch", 1: "steps"}});
    `samples` come from the run's own test batches, the first one traces.
    `reference`, where given, is what the written graph must equal instead of `module`: the model as trained,
    when `module` computes the same thing by operators the format has (an audio front end through torch.stft).
    """

    name: str
    module: nn.Module
    inputs: list[str]
    outputs: list[str]
    dynamic: dict[str, dict[int, str]]
    samples: list[tuple[torch.Tensor, ...]] = field(default_factory=list)
    reference: nn.Module | None = None


@dataclass
class Export:
    """What a family adapter hands the exporter: its graphs and its part of the sidecar (vocabularies, labels...)."""

    graphs: list[Graph]
    sidecar: dict[str, Any]
    #: the family's test metric through runners of its graphs by name: (metric, value, "max" or "min"), for --quantize
    score: Callable[[dict[str, Runner]], tuple[str, float, str]] | None = None
    #: a check of the written graphs beyond their outputs (a tagger's decoded tags): raises SeqtrainError on a
    #: mismatch, returns what it checked for the sidecar's "parity" entry
    check: Callable[[dict[str, Runner]], dict[str, Any]] | None = None


Adapter = Callable[[Trained, Any], Export]
ADAPTERS: dict[type, Adapter] = {}


def exporter(task_type: type[Task]) -> Callable[[Adapter], Adapter]:
    """Register `adapter(trained, test_loader) -> Export` for a task class and its subclasses.

    The adapter builds its graphs' samples from a few test batches (`sample_batches`) and may score
    the whole loader for --quantize."""

    def register(adapter: Adapter) -> Adapter:
        ADAPTERS[task_type] = adapter
        return adapter

    return register


def adapter_for(task: Task) -> Adapter:
    import seqtrain.export.families  # noqa: F401  (these register the built-in families)
    import seqtrain.export.signals  # noqa: F401
    import seqtrain.export.tagger  # noqa: F401

    for cls in type(task).__mro__:
        if cls in ADAPTERS:
            return ADAPTERS[cls]
    raise SeqtrainError(f"task '{task.name}' has no exporter yet; exportable: {', '.join(sorted(c.__name__ for c in ADAPTERS))}")


def plain_recurrent(model: nn.Module) -> nn.Module:
    """The model on nn's own recurrent kernels (the path ONNX and TorchScript know), never the compiled CPU loop."""
    for module in model.modules():
        if isinstance(module, LoopRNN):
            raise SeqtrainError(
                "this run's recurrent layers step in a Python loop (--recurrent-dropout or --layer-norm), which a "
                "graph would unroll to one length; export needs runs trained without them"
            )
        if isinstance(module, FusedRecurrent):
            module.kernel = "torch"
    return model.eval()


def sample_batches(loader: Any, count: int = PARITY_BATCHES) -> list[Any]:
    """`count` batches spread over the loader, its first and its last among them: a test split comes sorted by
    length, so the samples hold its shortest and its longest sequences (a loader without a length: the first)."""
    total = len(loader) if hasattr(loader, "__len__") else count
    wanted = {round(i * (total - 1) / max(count - 1, 1)) for i in range(count)}
    return [batch for index, batch in zip(range(max(wanted) + 1), loader) if index in wanted]


def test_loader(trained: Trained) -> Any:
    """The run's test split (validation where it has none), re-read from its data."""
    task = trained.task
    data = task.prepare(task.meta, quiet=True)
    loader = data.test if data.test is not None else data.val
    if loader is None:
        raise SeqtrainError(f"run {trained.checkpoint.parent} has neither a test nor a validation split to check the export on")
    return loader


def export_run(checkpoint: Path, fmt: str, out: Path, force: bool = False, quantize: str | None = None) -> dict[str, Any]:
    """Write the run's graphs and sidecar into `out`; returns the sidecar. One SeqtrainError line on any failure.

    `force` overwrites a non-empty `out` and keeps an int8 export whose metric dropped past the limit."""
    if fmt not in FORMATS:
        raise SeqtrainError(f"--format must be one of {', '.join(FORMATS)}, not '{fmt}'")
    if out.exists() and any(out.iterdir()) and not force:
        raise SeqtrainError(f"{out} is not empty; choose another --out or add --force to overwrite it")
    trained = load_trained(checkpoint, "cpu")
    plain_recurrent(trained.model)
    adapter = adapter_for(trained.task)
    with torch.no_grad():
        export = adapter(trained, test_loader(trained))
    if quantize is not None and export.score is None:
        raise SeqtrainError("--quantize is scored for classifiers and forecasters, taggers, signal, audio and CTC models; "
                            "this family exports in float32 only")
    out.mkdir(parents=True, exist_ok=True)
    runtimes = {graph.name: write_graph(graph, fmt, out) for graph in export.graphs}
    worst = max(check_parity(graph, runtimes[graph.name]) for graph in export.graphs)
    checked = export.check(runtimes) if export.check is not None else {}
    sidecar = {
        "format": SIDECAR_FORMAT,
        "seqtrain": __version__,
        "task": trained.task.name,
        "ability": trained.task.ability,
        "runtime": fmt,
        "graphs": {graph.name: describe(graph, fmt) for graph in export.graphs},
        **export.sidecar,
        "parity": {"tolerance": TOLERANCE, "max_abs_diff": worst, "samples": sum(len(g.samples) for g in export.graphs),
                   **checked},
    }
    if quantize is not None:
        from seqtrain.export.quantize import quantize_export

        sidecar["quantized"] = quantize_export(export, fmt, out, runtimes, quantize, force)
        sidecar["graphs"] = {graph.name: describe(graph, fmt, sidecar["quantized"]["files"][graph.name]) for graph in export.graphs}
    (out / SIDECAR).write_text(json.dumps(sidecar, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return sidecar


# ------------------------------------------------------------------ writing and running


def write_graph(graph: Graph, fmt: str, out: Path, name: str | None = None) -> Runner:
    """Write the graph (traced from its first sample) and return a function running the written file."""
    path = out / f"{name or graph.name}{FORMATS[fmt]}"
    example = graph.samples[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and deprecation notes: the parity check is what counts
        if fmt == "onnx":
            # The TorchScript-based exporter: torch 2.13's dynamo exporter writes nn.GRU over a dynamic batch with
            # an Expand that fails at run time in onnxruntime 1.32; this one maps nn.RNN/LSTM/GRU to ONNX's own ops.
            torch.onnx.export(
                graph.module, example, str(path), input_names=graph.inputs, output_names=graph.outputs,
                dynamic_axes=graph.dynamic, dynamo=False,
            )
        else:
            torch.jit.save(torch.jit.trace(graph.module, example, check_trace=False), str(path))
    return load_runner(path)


def load_runner(path: Path, threads: int = 1) -> Runner:
    """Run an exported file in its own runtime: numpy arrays in, numpy arrays out."""
    if path.suffix == ".onnx":
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = threads
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        return lambda arrays: session.run(None, dict(zip(names, arrays)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates torch.jit; the format still loads
        module = torch.jit.load(str(path))

    def run(arrays: tuple[np.ndarray, ...]) -> list[np.ndarray]:
        with torch.no_grad():
            result = module(*(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays))
        return [t.numpy() for t in (result if isinstance(result, tuple) else (result,))]

    return run


def as_arrays(tensors: Sequence[torch.Tensor]) -> tuple[np.ndarray, ...]:
    return tuple(t.detach().cpu().numpy() for t in tensors)


def check_parity(graph: Graph, runner: Runner) -> float:
    """The largest absolute difference between the written graph and PyTorch over the graph's samples; one line if over."""
    worst = 0.0
    for sample in graph.samples:
        with torch.no_grad():
            expected = (graph.module if graph.reference is None else graph.reference)(*sample)
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = runner(as_arrays(sample))
        for name, want, have in zip(graph.outputs, as_arrays(expected), got):
            if want.shape != have.shape:
                raise SeqtrainError(f"parity check failed: {graph.name} output '{name}' has shape {have.shape}, PyTorch's {want.shape}")
            diff = np.abs(have.astype(np.float64) - want.astype(np.float64))
            worst = max(worst, float(diff.max(initial=0.0)))
            if (diff > TOLERANCE + TOLERANCE * np.abs(want)).any():
                raise SeqtrainError(
                    f"parity check failed: {graph.name} output '{name}' differs from PyTorch by {diff.max():.3g} "
                    f"(tolerance {TOLERANCE}) on a test batch of shape {tuple(sample[0].shape)}; the export is not usable"
                )
    return worst


def describe(graph: Graph, fmt: str, file: str | None = None) -> dict[str, Any]:
    """The graph's file and its inputs' and outputs' names, dtypes and shapes (varying axes by name)."""
    sample = graph.samples[0]
    with torch.no_grad():
        outputs = graph.module(*sample)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)

    def spec(names: list[str], tensors: Sequence[torch.Tensor]) -> list[dict[str, Any]]:
        return [
            {"name": name, "dtype": str(t.dtype).removeprefix("torch."),
             "shape": [graph.dynamic.get(name, {}).get(axis, size) for axis, size in enumerate(t.shape)]}
            for name, t in zip(names, tensors)
        ]

    return {"file": file or f"{graph.name}{FORMATS[fmt]}", "inputs": spec(graph.inputs, sample), "outputs": spec(graph.outputs, outputs)}
