"""A trained run leaves seqtrain: ONNX or TorchScript graphs, checked against PyTorch, with a JSON sidecar.

`export_run` loads a run, asks its family's adapter (seqtrain/export/families.py)
for the graphs that family needs, writes them, runs the written files through
their own runtime (onnxruntime, torch.jit.load) on a sample of the run's test
batches and fails in one line unless every output equals PyTorch's within
TOLERANCE. The sidecar (`seqtrain.json`) holds everything a caller needs
without seqtrain: vocabulary and tokenizer rule, labels, normalisation, and
each graph's input and output names, dtypes and shapes.
"""

from seqtrain.export.core import SIDECAR, TOLERANCE, Export, Graph, exporter, export_run, plain_recurrent

__all__ = ["SIDECAR", "TOLERANCE", "Export", "Graph", "exporter", "export_run", "plain_recurrent"]
