"""K copies of one model, trained side by side and used as one: `--ensemble K`.

Each member starts from its own random weights and trains on its own loss
(the same batches, its own dropout); the trainer, its checkpoints and early
stopping see one model, scored by the members' combined output. Why: on a
training set of a few thousand examples the seed alone moves a score by a
point or more, and the mean of several members' probabilities is steadier
and often better (docs/tuning.md, "Ensembles", measures where and where not).
Training the mean output as one model instead would let the members lean
on each other and lose that: in training the ensemble returns every
member's output, stacked, and `split_members` trains each on its own loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from seqtrain.models.crf import CRF
from seqtrain.models.tagger import SequenceTagger


class Ensemble(nn.Module):
    """Members of one architecture; in training the forward pass gives each member's output stacked [K, ...],
    in evaluation their combination (`combine`), shaped as one member's."""

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        outputs = [member(*inputs) for member in self.members]
        return torch.stack(outputs) if self.training else self.combine(outputs)

    def combine(self, outputs: Sequence[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def example_input(self, *args, **kwargs) -> tuple[torch.Tensor, ...]:
        return self.members[0].example_input(*args, **kwargs)

    @property
    def embedding(self) -> nn.Embedding:
        """The first member's word embedding (what `--log-embeddings` shows)."""
        return self.members[0].embedding


class ClassifierEnsemble(Ensemble):
    """Classifiers whose probabilities are averaged; the output is the logits of that mean (softmax or sigmoid of it
    gives the mean exactly), so everything that reads a classifier's logits reads an ensemble's."""

    def __init__(self, members: Sequence[nn.Module], sigmoid: bool):
        super().__init__(members)
        self.sigmoid = sigmoid

    def combine(self, outputs: Sequence[torch.Tensor]) -> torch.Tensor:
        logits = torch.stack(list(outputs)).float()
        log_k = math.log(len(outputs))
        if self.sigmoid:  # log p - log(1 - p) of the mean p, in log space throughout
            positive = torch.logsumexp(nn.functional.logsigmoid(logits), 0) - log_k
            negative = torch.logsumexp(nn.functional.logsigmoid(-logits), 0) - log_k
            return positive - negative
        return torch.logsumexp(torch.log_softmax(logits, -1), 0) - log_k


class MeanCRF(CRF):
    """The members' CRFs as one: their start, transition and end scores averaged (read, never trained, here)."""

    def __init__(self, crfs: Sequence[CRF]):
        nn.Module.__init__(self)
        self._crfs = tuple(crfs)  # a plain tuple: the members own these parameters and save them

    def scores(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return tuple(torch.stack(s).mean(0) for s in zip(*(crf.scores() for crf in self._crfs)))  # type: ignore[return-value]


class TaggerEnsemble(Ensemble):
    """Taggers whose emission scores and CRF scores are averaged, decoded by one Viterbi pass."""

    def combine(self, outputs: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.stack(list(outputs)).mean(0)

    @property
    def crf(self) -> CRF | None:
        return MeanCRF([m.crf for m in self.members]) if self.members[0].crf is not None else None

    @property
    def chars(self) -> nn.Module | None:
        """The first member's character encoder (every member has one, or none)."""
        return self.members[0].chars

    def loss_sum(self, emissions: torch.Tensor, tags: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """In training (emissions [K, B, T, tags]): the mean of each member's own loss; else the combined model's."""
        if emissions.dim() == 4:
            return torch.stack([m.loss_sum(e, tags, lengths) for m, e in zip(self.members, emissions)]).mean()
        return SequenceTagger.loss_sum(self, emissions, tags, lengths)  # type: ignore[arg-type]

    def decode(self, emissions: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Viterbi over the combined emissions (what the ensemble gives in evaluation) with the mean CRF."""
        return SequenceTagger.decode(self, emissions, lengths)  # type: ignore[arg-type]


def split_members(
    model: nn.Module, outputs: torch.Tensor, loss: Callable[[torch.Tensor], torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(the loss to train on, the outputs to score). An ensemble in training gives each member's output [K, ...]:
    each member trains on its own loss (their mean) and the scores read the combination; any other model: its
    outputs' loss."""
    ensemble = getattr(model, "module", model)  # under DistributedDataParallel
    if isinstance(ensemble, Ensemble) and ensemble.training:
        members = list(outputs.unbind(0))
        return torch.stack([loss(o) for o in members]).mean(), ensemble.combine([o.detach() for o in members])
    return loss(outputs), outputs


def build_ensemble(build: Callable[[], nn.Module], size: int, wrap: Callable[[list[nn.Module]], Ensemble]) -> nn.Module:
    """`build()` once for size 1, else `size` members (each its own draw of random weights) in `wrap`."""
    if size == 1:
        return build()
    return wrap([build() for _ in range(size)])
