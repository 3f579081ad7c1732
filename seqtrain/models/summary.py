"""A Keras-style parameter summary: each layer's output shape and parameter count."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


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


def _is_leaf(module: nn.Module) -> bool:
    return isinstance(module, nn.RNNBase) or not any(True for _ in module.children())


def _shape(output) -> str:
    if isinstance(output, (tuple, list)):
        output = output[0]
    if isinstance(output, nn.utils.rnn.PackedSequence):
        return "packed " + str(tuple(output.data.shape))
    if not isinstance(output, torch.Tensor):
        return "?"
    return str((None, *output.shape[1:]))


def summarize(model: nn.Module, *inputs) -> ModelSummary:
    """Run one dummy forward pass and record every leaf layer in call order."""
    rows: dict[str, LayerRow] = {}
    hooks = []
    for name, module in model.named_modules():
        if name and _is_leaf(module) and not any(name.startswith(k + ".") for k in rows):

            def hook(mod, _inputs, output, name=name):
                if name not in rows:
                    params = sum(p.numel() for p in mod.parameters())
                    rows[name] = LayerRow(name, type(mod).__name__, _shape(output), params)

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
    return ModelSummary(list(rows.values()), total, trainable)
