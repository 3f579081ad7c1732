"""Keras' initialisation for recurrent models, the default (`--init keras`; `--init torch` keeps PyTorch's).

Keras initialises recurrent layers with Glorot-uniform input weights,
orthogonal recurrent weights and zero biases except an LSTM's forget gate
(`unit_forget_bias`: 1), embeddings uniform in +-0.05 and dense layers
Glorot-uniform with zero bias. PyTorch draws every recurrent weight and both
bias vectors uniformly in +-1/sqrt(hidden). With the lectures' IMDB model the
Keras scheme (and Keras' RMSprop constants) closed most of the gap between
seqtrain (84.7% test) and Keras on TensorFlow (87.7-88.4%); see the README.

PyTorch keeps two bias vectors per layer (input and recurrent) that are
summed; the forget-gate 1 is set in the input one only, so their sum is 1.
"""

from __future__ import annotations

import torch
from torch import nn

from seqtrain.models.cells import LoopLayer


def keras_embedding_(embedding: nn.Embedding) -> None:
    with torch.no_grad():
        nn.init.uniform_(embedding.weight, -0.05, 0.05)
        if embedding.padding_idx is not None:
            embedding.weight[embedding.padding_idx].zero_()


def keras_dense_(linear: nn.Linear) -> None:
    nn.init.xavier_uniform_(linear.weight)
    if linear.bias is not None:
        nn.init.zeros_(linear.bias)


def _recurrent_(w_ih: torch.Tensor, w_hh: torch.Tensor, biases: list[torch.Tensor], forget: torch.Tensor | None, hidden: int) -> None:
    with torch.no_grad():
        nn.init.xavier_uniform_(w_ih)  # [gates*H, in]: fans as Keras' kernel [in, gates*H]
        nn.init.orthogonal_(w_hh)  # [gates*H, H]: orthonormal columns, the transpose of Keras' orthogonal rows
        for bias in biases:
            bias.zero_()
        if forget is not None:
            forget[hidden : 2 * hidden].fill_(1.0)  # LSTM gate order i, f, g, o


def keras_recurrent_(rnn: nn.Module) -> None:
    """Keras' initialisation for every layer (and direction) of an nn.RNN/LSTM/GRU (fused or not) or a LoopRNN."""
    if isinstance(rnn, nn.RNNBase):
        lstm = isinstance(rnn, nn.LSTM)
        for layer in range(rnn.num_layers):
            for suffix in ("", "_reverse")[: 2 if rnn.bidirectional else 1]:
                get = lambda name: getattr(rnn, f"{name}_l{layer}{suffix}", None)  # noqa: E731
                biases = [b for b in (get("bias_ih"), get("bias_hh")) if b is not None]
                forget = get("bias_ih") if lstm else None
                _recurrent_(get("weight_ih"), get("weight_hh"), biases, forget, rnn.hidden_size)
        return
    for layer in rnn.modules():
        if isinstance(layer, LoopLayer):
            biases = [b for b in (layer.input_proj.bias, layer.hidden_proj.bias) if b is not None]
            forget = layer.input_proj.bias if layer.cell == "lstm" else None
            _recurrent_(layer.input_proj.weight, layer.hidden_proj.weight, biases, forget, layer.hidden)
