"""Recurrent layers with recurrent dropout and layer normalisation, shaped like nn.RNN/LSTM/GRU.

cuDNN-style fused layers cannot drop the hidden state between steps or
normalise inside the cell, so these run a Python loop over time steps. The
input projection of every step is one matmul before the loop; only the
recurrent matmul runs per step. `make_rnn` returns these only when one of the
two features is asked for, so plain models keep the fused kernels.

- Recurrent dropout (Gal & Ghahramani 2016, Keras' `recurrent_dropout`): one
  dropout mask per sequence on the hidden state fed back into the cell.
- Layer norm (Ba et al. 2016; Géron's LNSimpleRNNCell): each gate's
  pre-activation is normalised over its units; the LSTM also normalises its
  cell state before the output tanh.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

GATES = {"rnn": 1, "lstm": 4, "gru": 3}


class GateNorm(nn.Module):
    """Layer norm applied to each of `gates` chunks of a [B, gates*H] tensor separately, with its own gain and bias."""

    def __init__(self, gates: int, hidden: int):
        super().__init__()
        self.gates, self.hidden = gates, hidden
        self.weight = nn.Parameter(torch.ones(gates, hidden))
        self.bias = nn.Parameter(torch.zeros(gates, hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shaped = x.view(*x.shape[:-1], self.gates, self.hidden)
        normed = F.layer_norm(shaped, (self.hidden,)) * self.weight + self.bias
        return normed.view_as(x)


class LoopLayer(nn.Module):
    """One recurrent layer (rnn/lstm/gru) over batch-first input, one step at a time."""

    def __init__(self, cell: str, input_size: int, hidden: int, recurrent_dropout: float = 0.0, layer_norm: bool = False):
        super().__init__()
        if cell not in GATES:
            raise ValueError(f"unknown cell {cell!r}")
        self.cell, self.hidden, self.recurrent_dropout = cell, hidden, recurrent_dropout
        gates = GATES[cell]
        self.input_proj = nn.Linear(input_size, gates * hidden)
        self.hidden_proj = nn.Linear(hidden, gates * hidden, bias=cell == "gru")  # GRU keeps b_hn inside r * (.)
        # GRU: r and z are normalised together, the candidate after r gates it; LSTM: the gates, then the cell state.
        self.gate_norm = GateNorm(2 if cell == "gru" else gates, hidden) if layer_norm else None
        self.inner_norm = nn.LayerNorm(hidden) if layer_norm and cell != "rnn" else None
        bound = 1 / math.sqrt(hidden)  # nn.RNN's initialisation
        for param in (*self.input_proj.parameters(), *self.hidden_proj.parameters()):
            nn.init.uniform_(param, -bound, bound)
        if cell == "lstm":
            with torch.no_grad():  # forget-gate bias 1: remember by default (Jozefowicz et al. 2015)
                self.input_proj.bias[hidden : 2 * hidden].fill_(1.0)

    def forward(self, x: torch.Tensor, state=None):
        """x [B, T, I] -> (outputs [B, T, H], last state: h [B, H], or (h, c) for an LSTM)."""
        batch = x.shape[0]
        if state is None:
            zeros = x.new_zeros(batch, self.hidden)
            state = (zeros, zeros) if self.cell == "lstm" else zeros
        mask = None
        if self.training and self.recurrent_dropout > 0:
            keep = 1 - self.recurrent_dropout
            mask = x.new_empty(batch, self.hidden).bernoulli_(keep) / keep
        projected = self.input_proj(x)
        outputs = []
        for t in range(x.shape[1]):
            state = self._step(projected[:, t], state, mask)
            outputs.append(state[0] if self.cell == "lstm" else state)
        return torch.stack(outputs, 1), state

    def _step(self, xw: torch.Tensor, state, mask: torch.Tensor | None):
        h = state[0] if self.cell == "lstm" else state
        h_in = h * mask if mask is not None else h
        hw = self.hidden_proj(h_in)
        norm = self.gate_norm or (lambda z: z)
        if self.cell == "rnn":
            return torch.tanh(norm(xw + hw))
        if self.cell == "lstm":
            i, f, g, o = norm(xw + hw).chunk(4, -1)
            c = torch.sigmoid(f) * state[1] + torch.sigmoid(i) * torch.tanh(g)
            c_out = self.inner_norm(c) if self.inner_norm is not None else c
            return torch.sigmoid(o) * torch.tanh(c_out), c
        x_rz, x_n = xw.split([2 * self.hidden, self.hidden], -1)
        h_rz, h_n = hw.split([2 * self.hidden, self.hidden], -1)
        r, z = torch.sigmoid(norm(x_rz + h_rz)).chunk(2, -1)
        candidate = x_n + r * h_n
        n = torch.tanh(self.inner_norm(candidate) if self.inner_norm is not None else candidate)
        return (1 - z) * n + z * h


class LoopRNN(nn.Module):
    """Stacked LoopLayers with nn.RNN's batch-first interface: (output, h_n) or (output, (h_n, c_n)) for an LSTM."""

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        layer_norm: bool = False,
    ):
        super().__init__()
        self.cell = cell
        self.layers = nn.ModuleList(
            LoopLayer(cell, input_size if i == 0 else hidden, hidden, recurrent_dropout, layer_norm) for i in range(num_layers)
        )
        self.between = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, state=None):
        if isinstance(x, nn.utils.rnn.PackedSequence):
            raise TypeError("recurrent dropout and layer-norm cells run padded batches, not packed ones")
        if state is not None:  # nn.RNN layout: [layers, B, H] (a pair of them for an LSTM)
            state = list(zip(*state)) if self.cell == "lstm" else list(state)
        finals = []
        for index, layer in enumerate(self.layers):
            if index:
                x = self.between(x)
            x, final = layer(x, None if state is None else state[index])
            finals.append(final)
        if self.cell == "lstm":
            return x, (torch.stack([h for h, _ in finals]), torch.stack([c for _, c in finals]))
        return x, torch.stack(finals)
