"""A Keras-style parameter summary: each layer's output shape and parameter count."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from seqtrain.models.cells import LoopLayer
from seqtrain.models.fused import FusedRecurrent

# Recurrent layers are one row each: their insides run per time step, so their shapes are not the layer's output.
RECURRENT_LAYERS = (nn.RNNBase, LoopLayer)


@dataclass
class LayerRow:
    name: str
    kind: str
    output_shape: str
    params: int


@dataclass
class ModelSummary:
    rows: list[LayerRow]
    total: int
    trainable: int
    notes: list[str] = field(default_factory=list)  # one line each, for under the table


def _is_leaf(module: nn.Module) -> bool:
    return isinstance(module, RECURRENT_LAYERS) or not any(True for _ in module.children())


def _shape(output) -> str:
    if isinstance(output, (tuple, list)):
        output = output[0]
    if isinstance(output, nn.utils.rnn.PackedSequence):
        return "packed " + str(tuple(output.data.shape))
    if not isinstance(output, torch.Tensor):
        return "?"
    return str((None, *output.shape[1:]))


def bias_note(model: nn.Module) -> str | None:
    """Why torch counts more parameters than Keras for LSTM and simple RNN layers (Keras' GRU keeps both biases too)."""
    extra = sum(
        param.numel()
        for module in model.modules()
        if isinstance(module, (nn.LSTM, nn.RNN))
        for name, param in module.named_parameters()
        if name.startswith("bias_hh")
    )
    if not extra:
        return None
    keras_total = sum(p.numel() for p in model.parameters()) - extra
    return (
        "Note: torch's LSTM/RNN layers keep two bias vectors per gate (b_ih and b_hh) where Keras keeps one, "
        f"so Keras counts {extra:,} parameters fewer ({keras_total:,})."
    )


def _kind(module: nn.Module) -> str:
    """The layer's class name; for models/fused.py's layers, the torch class they stand in for (LSTM, not FusedLSTM)."""
    kind = type(module)
    if isinstance(module, FusedRecurrent):
        kind = next(base for base in kind.__mro__ if issubclass(base, nn.RNNBase) and not issubclass(base, FusedRecurrent))
    return kind.__name__


def summarize(model: nn.Module, *inputs) -> ModelSummary:
    """Run one dummy forward pass and record every leaf layer in call order."""
    rows: dict[str, LayerRow] = {}
    leaves: list[str] = []
    hooks = []
    for name, module in model.named_modules():
        if name and _is_leaf(module) and not any(name.startswith(leaf + ".") for leaf in leaves):
            leaves.append(name)

            def hook(mod, _inputs, output, name=name):
                if name not in rows:
                    params = sum(p.numel() for p in mod.parameters())
                    rows[name] = LayerRow(name, _kind(mod), _shape(output), params)

            hooks.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        model.train(was_training)
        for handle in hooks:
            handle.remove()
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    note = bias_note(model)
    return ModelSummary(list(rows.values()), total, trainable, [note] if note else [])
