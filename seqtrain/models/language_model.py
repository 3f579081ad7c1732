"""Many-to-many and stateful: embed tokens, run a stacked RNN/LSTM/GRU, predict the next token at every step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from seqtrain.config import LanguageModelModel
from seqtrain.errors import SeqtrainError
from seqtrain.models.recurrent import cell_stepper, rnn_from_settings

State = Any  # a tensor [layers, B, H] for RNN/GRU, a (h, c) pair for LSTM

#: cluster boundaries of `--cutoffs auto` (those below the vocabulary size): pytorch/examples' and fairseq's for WikiText
AUTO_CUTOFFS = (2000, 10000)
#: the most numbers `LanguageModel.stepper` keeps in its table of first-layer input projections (4 MiB of float32)
TABLE_NUMBERS = 1 << 20
#: each adaptive-softmax cluster projects to hidden / 4**i units (Grave et al. 2017; torch's default)
DIV_VALUE = 4.0


def parse_cutoffs(spec: str) -> list[int] | None:
    """`--cutoffs` as increasing positive integers ("2000,10000"), or None for "auto"; checked before any data loads."""
    if spec == "auto":
        return None
    try:
        cutoffs = [int(part) for part in spec.split(",")]
    except ValueError:
        cutoffs = []
    if not cutoffs or cutoffs[0] < 1 or any(b <= a for a, b in zip(cutoffs, cutoffs[1:])):
        raise SeqtrainError(f"--cutoffs must be 'auto' or increasing positive integers like 2000,10000, not '{spec}'")
    return cutoffs


def adaptive_cutoffs(spec: str, vocab_size: int) -> list[int]:
    """Cluster boundaries in the frequency-sorted vocabulary; [] means no cluster is worth having (a full softmax)."""
    cutoffs = parse_cutoffs(spec)
    if cutoffs is None:
        return [c for c in AUTO_CUTOFFS if c < vocab_size - 1]
    if cutoffs[-1] >= vocab_size - 1:
        raise SeqtrainError(
            f"--cutoffs {spec}: the last boundary must be below {vocab_size - 1} (the vocabulary has {vocab_size} tokens); "
            "or use 'auto'"
        )
    return cutoffs


class LanguageModel(nn.Module):
    """Embedding -> dropout -> stacked RNN (dropout between layers) -> dropout -> output over the vocabulary.

    `forward` takes and returns the recurrent state, so the caller decides
    whether it is carried (truncated BPTT, generation) or reset. With
    `tie_weights` the output layer shares the embedding matrix (Press & Wolf
    2017), which needs embed_dim == hidden.

    The output is a full softmax (`nn.Linear` over the vocabulary) or an
    adaptive softmax (Grave et al. 2017, `nn.AdaptiveLogSoftmaxWithLoss`): the
    most frequent words in a head, rarer ones in clusters reached through it
    with smaller projections, so most tokens never pay for the rare words.
    Both give exact, normalised log-probabilities; the vocabulary must be
    sorted by frequency, as `Vocab.build` sorts it.
    """

    def __init__(self, vocab_size: int, cfg: LanguageModelModel):
        super().__init__()
        if cfg.tie_weights and cfg.embed_dim != cfg.hidden:
            raise SeqtrainError(
                f"--tie-weights needs --embed-dim equal to --hidden (got {cfg.embed_dim} and {cfg.hidden})"
            )
        cutoffs = adaptive_cutoffs(cfg.cutoffs, vocab_size) if cfg.output == "adaptive" else []
        if cutoffs and cfg.tie_weights:
            raise SeqtrainError("--tie-weights shares the embedding with a full softmax: add --output full (word tasks default to adaptive)")
        self.vocab_size = vocab_size
        self.embedding = nn.Embedding(vocab_size, cfg.embed_dim)
        self.drop = nn.Dropout(cfg.dropout)
        between = cfg.dropout if cfg.layers > 1 else 0.0
        self.rnn = rnn_from_settings(cfg, cfg.embed_dim, between)
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        self.adaptive = bool(cutoffs)
        if self.adaptive:
            self.decoder: nn.Module = nn.AdaptiveLogSoftmaxWithLoss(cfg.hidden, vocab_size, cutoffs, div_value=DIV_VALUE)
            return
        self.decoder = nn.Linear(cfg.hidden, vocab_size)
        nn.init.zeros_(self.decoder.bias)
        if cfg.tie_weights:
            self.decoder.weight = self.embedding.weight
        else:
            nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    def features(self, tokens: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        """The recurrent output [B, T, H] (after dropout) that the output layer reads, and the state after it."""
        outputs, state = self.rnn(self.drop(self.embedding(tokens)), state)
        return self.drop(outputs), state

    def forward(
        self, tokens: torch.Tensor, state: State = None, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State]:
        """Scores [B, T, V] whose softmax is the next-token distribution after each position, and the final state.

        Logits for a full softmax; exact log-probabilities for an adaptive one.
        With `targets`, the mean loss instead (see `loss`): training goes through
        forward so that a DistributedDataParallel wrapper sees it and averages the gradients.
        """
        if targets is not None:
            return self.loss(tokens, targets, state)
        hidden, state = self.features(tokens, state)
        return self.scores(hidden.reshape(-1, hidden.shape[-1])).view(*hidden.shape[:2], -1), state

    def scores(self, hidden: torch.Tensor) -> torch.Tensor:
        """Output scores [N, V] for recurrent outputs [N, H]: logits (full softmax) or log-probabilities (adaptive)."""
        return self.decoder.log_prob(hidden) if self.adaptive else self.decoder(hidden)

    def step(self, token: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """Scores [B, V] for the token after `token` [B] (one id per row), and the new state; for generation.

        Runs the recurrent layers one step with their cell kernels where they
        allow it (the same result as `forward` on one step, in eval mode).
        """
        return self.stepper()(token, state)

    def stepper(self) -> Callable[[torch.Tensor, State], tuple[torch.Tensor, State]]:
        """`step` as a function with the model's modules and weights looked up once: generation calls it for every token.

        Where the vocabulary is small (characters), the first layer's input
        projection of every token is computed here, once, and looked up per
        step: a row read instead of a matmul over weight_ih_l0 (scripts/bench_generate.py).
        """
        rnn = self.rnn
        projected = isinstance(rnn, nn.RNNBase) and self.vocab_size * rnn.weight_ih_l0.shape[0] <= TABLE_NUMBERS
        cells = None if self.training else cell_stepper(rnn, projected)
        if cells is None:
            return self._sequence_step
        rows = F.linear(self.embedding.weight, rnn.weight_ih_l0, rnn.bias_ih_l0) if projected else self.embedding.weight
        if self.adaptive:
            project = self.decoder.log_prob
        else:
            weight, bias = self.decoder.weight, self.decoder.bias
            project = lambda hidden: F.linear(hidden, weight, bias)  # noqa: E731 - the module call costs more per token

        def step(token: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
            if state is None:  # nothing read yet: the cells need a state
                return self._sequence_step(token, state)
            hidden, state = cells(F.embedding(token, rows), state)
            return project(hidden), state

        return step

    def _sequence_step(self, token: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """`step` through `forward`: for loop layers, training mode, and a first step without a state."""
        scores, state = self(token[:, None], state)
        return scores[:, -1], state

    def loss(self, tokens: torch.Tensor, targets: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        """Mean negative log-likelihood (nats per token) of `targets` [B, T], and the final state.

        The adaptive softmax computes only the clusters that the targets fall in.
        """
        hidden, state = self.features(tokens, state)
        hidden, targets = hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1)
        if self.adaptive:
            return self.decoder(hidden, targets).loss, state
        return F.cross_entropy(self.decoder(hidden), targets), state

    def example_input(self, batch: int = 2, steps: int = 100) -> tuple[torch.Tensor]:
        """A dummy batch for the parameter summary."""
        return (torch.zeros(batch, steps, dtype=torch.long),)
