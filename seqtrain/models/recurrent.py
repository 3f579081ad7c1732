"""A recurrent encoder for padded variable-length batches that never lets padding leak.

Each layer and direction is its own single-layer nn.RNN/LSTM/GRU, so the same
parameters serve two exact ways of skipping padding:

- packed: pack_padded_sequence, then all layers and directions in one call
  of the multi-layer kernel (cuDNN's on CUDA) given these parameters in nn's
  order; per layer where dropout runs between layers (that kernel's own
  dropout draws other numbers);
- masked: run the padded batch as is. Right padding cannot reach the valid
  steps of a forward pass; the backward direction runs forward over each
  sequence reversed *within its own length*, so its padding also comes last.
  The last state is read at each sequence's true end. This is the default:
  faster than packing on CPU (scripts/bench_train.py) and, measured on an
  H100 with the IMDB default model, on CUDA too (README, CUDA).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from seqtrain.config import EncoderModel, ModelSettings
from seqtrain.models.cells import LoopRNN
from seqtrain.models.fused import FusedGRU, FusedLSTM, FusedRecurrent, FusedRNN
from seqtrain.models.init import keras_recurrent_

CELLS = {"rnn": FusedRNN, "lstm": FusedLSTM, "gru": FusedGRU}


def make_rnn(
    cell: str,
    input_size: int,
    hidden: int,
    num_layers: int = 1,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    layer_norm: bool = False,
    kernel: str = "auto",
    init: str = "keras",
) -> nn.Module:
    """A batch-first nn.RNN/LSTM/GRU; with recurrent dropout or layer norm, the same interface from models/cells.py.

    The nn module is models/fused.py's subclass: same parameters, with `kernel`
    ("auto", "torch" or "fused") choosing at forward time between nn's kernel
    and the fused CPU one. `init` "keras" re-initialises it as Keras would (models/init.py), "torch" keeps nn's.
    """
    if recurrent_dropout or layer_norm:
        rnn = LoopRNN(cell, input_size, hidden, num_layers, dropout, recurrent_dropout, layer_norm)
    else:
        rnn = CELLS[cell](input_size, hidden, num_layers=num_layers, batch_first=True, dropout=dropout, kernel=kernel)
    if init == "keras":
        keras_recurrent_(rnn)
    return rnn


def rnn_from_settings(cfg: ModelSettings, input_size: int, between: float) -> nn.Module:
    """`make_rnn` with a model's shared settings (cell, size, layers, recurrent dropout, layer norm, kernel, init)."""
    return make_rnn(
        cfg.cell, input_size, cfg.hidden, cfg.layers, between, cfg.recurrent_dropout, cfg.layer_norm, cfg.kernel, cfg.init
    )


#: aten's multi-layer sequence kernels that nn.RNN/LSTM/GRU call on packed input, by nn's `mode`
STACK_KERNELS = {"LSTM": torch._VF.lstm, "GRU": torch._VF.gru, "RNN_TANH": torch._VF.rnn_tanh, "RNN_RELU": torch._VF.rnn_relu}

#: aten's one-step cells with nn.RNN/LSTM/GRU's parameter layout (what nn.RNNCell/LSTMCell/GRUCell call)
STEP_CELLS = {"LSTM": torch.lstm_cell, "GRU": torch.gru_cell, "RNN_TANH": torch.rnn_tanh_cell, "RNN_RELU": torch.rnn_relu_cell}


def cell_stepper(rnn: nn.Module, projected: bool = False) -> Callable[[torch.Tensor, Any], tuple[torch.Tensor, Any]] | None:
    """One time step of a stacked unidirectional nn.RNN/LSTM/GRU as a function: (input [B, I], state) -> (output [B, H], new state).

    The same arithmetic as `rnn(x[:, None], state)` in eval mode (no dropout
    between layers) without the per-call set-up of the sequence kernel, which
    dominates when a sequence is one step long (generation: 10x on CPU). The
    cell kernel and each layer's weights are looked up once, here, not per
    token. The state must be given (nn's layout). None where it does not
    apply (loop layers, bidirectional, projections): the caller runs the module itself.

    `projected`: the input is the first layer's input projection already,
    x @ weight_ih_l0.T + bias_ih_l0 [B, gates * H], as the sequence kernel
    computes it for all steps before its loop (a language model looks it up
    per token). The cell gets it as its input bias, with an input and a weight
    of zero columns: their product adds nothing, so the gates are that
    projection plus the recurrent one, and the cell never reads weight_ih_l0.
    """
    cell = STEP_CELLS.get(getattr(rnn, "mode", None))
    if cell is None or rnn.bidirectional or rnn.proj_size or not rnn.bias:
        return None
    flat = rnn._flat_weights  # per layer: weight_ih, weight_hh, bias_ih, bias_hh
    layers = [tuple(flat[4 * layer : 4 * layer + 4]) for layer in range(rnn.num_layers)]
    first = None
    if projected:
        w_ih, w_hh, _, b_hh = layers.pop(0)
        no_weight = w_ih.new_empty(w_ih.shape[0], 0)
        first = lambda x, hx: cell(x[:, :0], hx, no_weight, w_hh, x, b_hh)  # noqa: E731
    if rnn.mode == "LSTM":

        def step_lstm(x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
            hs, cs = state
            finals_h, finals_c = [], []
            if first is not None:
                x, c = first(x, (hs[0], cs[0]))
                finals_h.append(x)
                finals_c.append(c)
            for layer, weights in enumerate(layers, len(finals_h)):
                x, c = cell(x, (hs[layer], cs[layer]), *weights)
                finals_h.append(x)
                finals_c.append(c)
            return x, (torch.stack(finals_h), torch.stack(finals_c))

        return step_lstm

    def step(x: torch.Tensor, state: torch.Tensor):
        finals = []
        if first is not None:
            x = first(x, state[0])
            finals.append(x)
        for layer, weights in enumerate(layers, len(finals)):
            x = cell(x, state[layer], *weights)
            finals.append(x)
        return x, torch.stack(finals)

    return step


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each row's first `length` steps, leaving its padding in place. Its own inverse."""
    steps = torch.arange(x.shape[1], device=x.device).unsqueeze(0)
    lengths = lengths.to(x.device).unsqueeze(1)
    index = torch.where(steps < lengths, lengths - 1 - steps, steps)
    return x.gather(1, index.view(*index.shape, *[1] * (x.dim() - 2)).expand_as(x))


def padding_mask(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """[B, width] True at valid steps."""
    return torch.arange(width, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


class RecurrentEncoder(nn.Module):
    """Stacked, optionally bidirectional RNN/LSTM/GRU over right-padded [B, T, E] input."""

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden: int,
        layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        packing: str = "off",
        recurrent_dropout: float = 0.0,
        layer_norm: bool = False,
        kernel: str = "auto",
        init: str = "keras",
    ):
        super().__init__()
        self.directions = 2 if bidirectional else 1
        self.hidden = hidden
        # loop cells (recurrent dropout, layer norm) take padded batches only: the masked path is exact for them too
        self.packing = "off" if recurrent_dropout or layer_norm else packing
        self.layers = nn.ModuleList()
        for layer in range(layers):
            size = input_size if layer == 0 else hidden * self.directions
            directions = ("fwd", "bwd")[: self.directions]
            self.layers.append(
                nn.ModuleDict(
                    {d: make_rnn(cell, size, hidden, 1, 0.0, recurrent_dropout, layer_norm, kernel, init) for d in directions}
                )
            )
        self.between = nn.Dropout(dropout)

    @classmethod
    def from_settings(cls, cfg: EncoderModel, input_size: int) -> RecurrentEncoder:
        return cls(
            cfg.cell, input_size, cfg.hidden, cfg.layers, cfg.bidirectional, cfg.dropout, cfg.packing,
            cfg.recurrent_dropout, cfg.layer_norm, cfg.kernel, cfg.init,
        )

    @property
    def output_size(self) -> int:
        return self.hidden * self.directions

    def forward(
        self, x: torch.Tensor, lengths: torch.Tensor, zero_padding: bool = True, embedding: nn.Embedding | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return outputs [B, T, H*dirs] and each sequence's last state [B, H*dirs].

        Outputs are zero at padding unless `zero_padding=False`, for callers
        that never read them there (it saves a pass over the outputs). For the
        backward direction the 'last' state is the one after reading the whole
        sequence backwards, i.e. at its first token. With `embedding`, x is
        token ids [B, T] to look up in it: the first layer folds the lookup into
        its input product where it can (FusedRecurrent.folds).
        """
        if embedding is not None and not self.folds(embedding):
            x, embedding = embedding(x), None
        if self.stacks():
            x, last = self._packed_stack(x, lengths)
        else:
            run = self._packed if self.packing == "on" else self._masked
            finals = None
            for index, layer in enumerate(self.layers):
                if index:
                    x = self.between(x)
                lookup = embedding if index == 0 else None
                outputs, finals = zip(*(run(rnn, x, lengths, d == "bwd", lookup) for d, rnn in layer.items()))
                x = torch.cat(outputs, dim=-1) if len(outputs) > 1 else outputs[0]
            last = torch.cat(finals, dim=-1)
        if zero_padding:
            x = x * padding_mask(lengths.to(x.device), x.shape[1]).unsqueeze(-1).to(x.dtype)
        return x, last

    def folds(self, embedding: nn.Embedding) -> bool:
        """Whether every direction of the first layer takes token ids with `embedding` and folds the lookup."""
        first = self.layers[0].values()
        return self.packing != "on" and all(isinstance(rnn, FusedRecurrent) and rnn.folds(embedding) for rnn in first)

    def stacks(self) -> bool:
        """Whether forward runs every layer and direction in one kernel call: packing, and no dropout between layers to draw."""
        if self.packing != "on" or (len(self.layers) > 1 and self.between.p and self.training):
            return False
        return all(isinstance(rnn, nn.RNNBase) for layer in self.layers for rnn in layer.values())

    def _packed_stack(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The packed path in one call of nn's multi-layer kernel, with the per-layer modules' own parameters.

        nn's bidirectional kernel reads each sequence backwards from its own end,
        as the per-layer path does by reversing within lengths, so both compute the same.
        """
        first = self.layers[0]["fwd"]
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        weights = [w for layer in self.layers for rnn in layer.values() for w in rnn._flat_weights]
        zeros = packed.data.new_zeros(len(self.layers) * self.directions, x.shape[0], self.hidden)
        lstm = first.mode == "LSTM"
        out, h_n, *_ = STACK_KERNELS[first.mode](
            packed.data, packed.batch_sizes, (zeros, zeros) if lstm else zeros, weights, first.bias, len(self.layers), 0.0,
            self.training, self.directions == 2,
        )
        out = PackedSequence(out, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)
        outputs, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        last = h_n[-self.directions:].index_select(1, packed.unsorted_indices)  # the last layer's directions
        return outputs, torch.cat(list(last), dim=-1)

    @staticmethod
    def _masked(rnn: nn.RNNBase, x, lengths, reverse: bool, embedding: nn.Embedding | None = None):
        if reverse:
            x = reverse_padded(x, lengths)
        out, _ = rnn(x) if embedding is None else rnn(x, embedding=embedding)
        last = out[torch.arange(out.shape[0], device=out.device), lengths.to(out.device) - 1]
        if reverse:
            out = reverse_padded(out, lengths)
        return out, last

    @staticmethod
    def _packed(rnn: nn.RNNBase, x, lengths, reverse: bool, embedding: None = None):
        if reverse:
            x = reverse_padded(x, lengths)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, state = rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        last = (state[0] if isinstance(state, tuple) else state)[-1]
        if reverse:
            out = reverse_padded(out, lengths)
        return out, last


class Pooling(nn.Module):
    """One vector per sequence from masked outputs: the last state, or the mean or max over valid steps.

    A module rather than a function so that `seqtrain summary` shows the pooled shape as a row of its own.
    """

    def __init__(self, mode: str):
        super().__init__()
        if mode not in ("last", "mean", "max"):
            raise ValueError(f"unknown pooling {mode!r}")
        self.mode = mode

    def extra_repr(self) -> str:
        return self.mode

    def forward(self, outputs: torch.Tensor, last: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.mode == "last":
            return last
        if self.mode == "mean":
            return outputs.sum(1) / lengths.to(outputs.device).unsqueeze(1).to(outputs.dtype)
        mask = padding_mask(lengths.to(outputs.device), outputs.shape[1]).unsqueeze(-1)
        return outputs.masked_fill(~mask, float("-inf")).max(1).values
