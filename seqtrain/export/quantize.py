"""--quantize int8: dynamic int8 quantization of an export, scored on the test split before and after.

ONNX graphs go through onnxruntime's `quantize_dynamic` (int8 weights for
MatMul/Gemm, LSTM and the embedding Gather; activations quantized per batch
at run time); TorchScript graphs through torch's dynamic quantization of
nn.Linear, nn.LSTM and nn.GRU. Each family's test metric is computed through
the float and the int8 files; a drop past the family's limit refuses the
export in one line unless --force.
"""

from __future__ import annotations

import copy
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from seqtrain.errors import SeqtrainError
from seqtrain.export.core import FORMATS, Export, Graph, Runner, as_arrays, load_runner
from seqtrain.models.fused import FusedRecurrent

#: the most a metric may worsen under int8 before the export is refused: accuracy-like ("max") by this many
#: points absolute, error-like ("min") by this fraction of its float value
MAX_DROP = {"max": 0.01, "min": 0.05}
LATENCY_RUNS = 200


def quantize_graph(graph: Graph, fmt: str, source: Path, target: Path) -> None:
    """Write the int8 version of `graph` (already written in float at `source`) to `target`."""
    if fmt == "onnx":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
        return
    from torch.ao.nn.quantized import dynamic as quantized
    from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

    module = as_nn_layers(copy.deepcopy(graph.module))
    kinds = {nn.Linear: quantized.Linear, nn.LSTM: quantized.LSTM, nn.GRU: quantized.GRU}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notes (it points to torchao)
        module = quantize_dynamic(module, {kind: default_dynamic_qconfig for kind in kinds}, mapping=kinds)
        torch.jit.save(torch.jit.trace(module, graph.samples[0], check_trace=False), str(target))


def as_nn_layers(module: nn.Module) -> nn.Module:
    """`module` with each FusedRecurrent layer replaced by the nn.LSTM/GRU/RNN it extends, same weights
    (torch's quantization converts nn's exact types only)."""
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, FusedRecurrent):
                base = next(cls for cls in type(child).__mro__ if cls in (nn.LSTM, nn.GRU, nn.RNN))
                extra = {"nonlinearity": child.nonlinearity} if base is nn.RNN else {}
                plain = base(child.input_size, child.hidden_size, child.num_layers, bias=child.bias,
                             batch_first=child.batch_first, dropout=child.dropout, bidirectional=child.bidirectional, **extra)
                plain.load_state_dict(child.state_dict())
                setattr(parent, name, plain.eval())
    return module


def batch_one_latency(runner: Runner, sample: tuple[torch.Tensor, ...]) -> float:
    """Seconds per call on the sample's first row."""
    one = as_arrays(tuple(t[:1] if t.dim() and t.shape[0] == sample[0].shape[0] else t for t in sample))
    runner(one)
    start = time.perf_counter()
    for _ in range(LATENCY_RUNS):
        runner(one)
    return (time.perf_counter() - start) / LATENCY_RUNS


def quantize_export(
    export: Export, fmt: str, out: Path, runtimes: dict[str, Runner], kind: str, allow_drop: bool
) -> dict[str, Any]:
    """Quantize every graph of the export, score float and int8 on the test split, refuse a drop past MAX_DROP."""
    ext = FORMATS[fmt]
    int8 = {}
    for graph in export.graphs:
        quantize_graph(graph, fmt, out / f"{graph.name}{ext}", out / f"{graph.name}.int8{ext}")
        int8[graph.name] = load_runner(out / f"{graph.name}.int8{ext}")
    metric, before, better = export.score(runtimes)
    _, after, _ = export.score(int8)
    drop = before - after if better == "max" else (after - before) / max(abs(before), 1e-12)
    size = sum((out / f"{g.name}.int8{ext}").stat().st_size for g in export.graphs) / sum(
        (out / f"{g.name}{ext}").stat().st_size for g in export.graphs)
    first = export.graphs[0]
    runs = (runtimes[first.name], int8[first.name])
    timings = [[batch_one_latency(run, first.samples[0]) for run in runs] for _ in range(2)]  # interleaved, twice
    float_s, int8_s = (sum(t[i] for t in timings) / 2 for i in (0, 1))
    limit = MAX_DROP[better]
    if better == "max":
        change = f"{(after - before) * 100:+.2f} points; refused below -{limit * 100:.0f} points"
    else:
        change = f"{drop:+.1%}; refused above +{limit:.0%}"
    summary = f"int8 ({fmt}): test {metric} {before:.4g} -> {after:.4g} ({change})"
    summary += f"; size {size:.2f}x and batch-1 latency {int8_s / float_s:.2f}x of float32's"
    if drop > limit and not allow_drop:
        for graph in export.graphs:
            (out / f"{graph.name}.int8{ext}").unlink()
        raise SeqtrainError(f"{summary}: refused; the float32 export is kept, add --force to keep the int8 one")
    return {
        "kind": kind, "metric": metric, "float32": before, "int8": after, "limit": limit,
        "size_ratio": size, "latency_ratio": int8_s / float_s, "summary": summary,
        "files": {graph.name: f"{graph.name}.int8{ext}" for graph in export.graphs},
    }
