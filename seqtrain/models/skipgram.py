"""Skip-gram with negative sampling (Mikolov et al. 2013): the sampler that turns a token stream into
(center, context, negatives) batches, and the two embedding tables it trains.

The sampler follows word2vec.c: frequent words are dropped at random before the windows are cut
(keep probability (sqrt(f / t) + 1) * t / f for a word of relative frequency f), each center word
draws its own reduced window 1..`window`, windows never cross a document boundary, and negatives
are drawn from the unigram distribution raised to 0.75. A batch is a chunk of `chunk` words of the
raw stream, so the words/s a progress bar shows are words of the corpus, as word2vec.c counts them.

The embeddings use sparse gradients: a step touches only the rows its batch names, so its cost does
not grow with the vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def keep_probabilities(counts: torch.Tensor, sample: float) -> torch.Tensor:
    """The chance each word survives frequent-word subsampling (word2vec.c's formula); 1 when `sample` is 0."""
    if sample <= 0:
        return torch.ones(len(counts))
    frequency = counts.double() / counts.sum().double()
    threshold = sample
    keep = (torch.sqrt(frequency / threshold) + 1) * threshold / frequency.clamp_min(1e-30)
    return keep.clamp(max=1.0).float()


def negative_distribution(counts: torch.Tensor, power: float = 0.75) -> torch.Tensor:
    """Unigram counts raised to `power`, normalised: the distribution negatives are drawn from."""
    weights = counts.double().pow(power)
    return (weights / weights.sum()).float()


@dataclass
class SkipGramBatch:
    """The words kept from one chunk and which of their neighbours are pairs.

    `right[k, i]`: the word at i is a center with the word at i + k + 1 as context; `left[k, i]`: the
    word at i + k + 1 is a center with the word at i as context (each draws its own reduced window).
    """

    tokens: torch.Tensor  # [C] word ids of the words kept, in text order
    right: torch.Tensor  # [W, C] bool
    left: torch.Tensor  # [W, C] bool
    negatives: torch.Tensor  # [C, K] word ids drawn from unigram^0.75, one set per center
    weights: torch.Tensor  # [C] pairs per center: the weight of its negatives' loss
    words: int  # words of the raw stream this batch covers (for words/s)

    @property
    def pairs(self) -> int:
        return int(self.weights.sum().item())

    def to(self, device: torch.device) -> SkipGramBatch:
        moved = {name: getattr(self, name).to(device) for name in ("tokens", "right", "left", "negatives", "weights")}
        return SkipGramBatch(**moved, words=self.words)


class SkipGramBatches:
    """Batches of skip-gram pairs over a stream of word ids; the trainer's Loader protocol.

    `ids` holds a vocabulary id per token (-1 for words below --min-count, skipped as word2vec.c
    skips them), `docs` the document each token belongs to. Subsampling, windows and negatives are
    drawn afresh every epoch from a generator seeded by (seed, epoch).

    Each center word draws one set of K negatives that serves all of its (center, context) pairs,
    weighted by their number: in expectation the same loss as K fresh negatives per pair
    (word2vec.c), at a fraction of the rows to read and update.
    """

    def __init__(
        self, ids: torch.Tensor, docs: torch.Tensor, counts: torch.Tensor, window: int, negatives: int,
        sample: float, chunk: int, seed: int,
    ):
        self.ids, self.docs = ids, docs
        self.window, self.negatives, self.chunk, self.seed = window, negatives, chunk, seed
        self.keep = keep_probabilities(counts, sample)
        self.noise_cdf = torch.cumsum(negative_distribution(counts).double(), 0)
        self.epoch = 0

    def __len__(self) -> int:
        return (len(self.ids) + self.chunk - 1) // self.chunk

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[SkipGramBatch]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        for start in range(0, len(self.ids), self.chunk):
            tokens = self.ids[start : start + self.chunk].long()
            docs = self.docs[start : start + self.chunk]
            yield self.batch(tokens, docs, generator)

    def draw_negatives(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """`count` word ids drawn from unigram^0.75 (inverse-CDF sampling)."""
        draws = torch.rand(count, generator=generator, dtype=torch.float64)
        return torch.searchsorted(self.noise_cdf, draws).clamp_(max=len(self.noise_cdf) - 1)

    def batch(self, tokens: torch.Tensor, docs: torch.Tensor, generator: torch.Generator) -> SkipGramBatch:
        """Subsample one chunk, cut each center's reduced window, draw the negatives."""
        words = len(tokens)
        kept = (tokens >= 0) & (torch.rand(words, generator=generator) < self.keep[tokens.clamp_min(0)])
        tokens, docs = tokens[kept], docs[kept]
        count = len(tokens)
        reach = torch.randint(1, self.window + 1, (count,), generator=generator)
        right = torch.zeros(self.window, count, dtype=torch.bool)
        left = torch.zeros(self.window, count, dtype=torch.bool)
        weights = torch.zeros(count)
        for k in range(min(self.window, count - 1)):
            offset = k + 1
            same = docs[offset:] == docs[:-offset]  # windows stay inside one document
            right[k, : count - offset] = same & (reach[:-offset] >= offset)
            left[k, : count - offset] = same & (reach[offset:] >= offset)
            weights[: count - offset] += right[k, : count - offset]
            weights[offset:] += left[k, : count - offset]
        negatives = self.draw_negatives(count * self.negatives, generator).view(count, self.negatives)
        return SkipGramBatch(tokens, right, left, negatives, weights, words)


class SkipGramLoss(torch.autograd.Function):
    """SkipGram's loss with its gradient written out: sparse row gradients, one row per word a batch names.

    Autograd would record a hundred small operations per batch and hand the optimizer one sparse
    gradient per lookup, with a row per occurrence, to merge; the gradient of this loss is short to
    write (d/ds -log s(s) = s(s) - 1, d/ds -log s(-s) = s(s)), so forward computes it with the loss
    and backward only scales it. Pairs are neighbours in the chunk, so their scores are products of
    shifted rows: no gather per pair.
    """

    @staticmethod
    def forward(ctx, in_weight, out_weight, tokens, right, left, negatives, weights):
        count, dim = len(tokens), in_weight.shape[1]
        center = in_weight.index_select(0, tokens)  # [C, d]
        context = out_weight.index_select(0, tokens)  # [C, d]
        noise = out_weight.index_select(0, negatives.reshape(-1)).view(*negatives.shape, dim)  # [C, K, d]
        # positive pairs: all offsets' scores in one vector, so the nonlinearity is one call
        offsets = range(1, min(len(right), count - 1) + 1)
        scores = torch.cat([
            torch.cat(((center[:-o] * context[o:]).sum(-1), (center[o:] * context[:-o]).sum(-1))) for o in offsets
        ] or [center.new_zeros(0)])
        mask = torch.cat([torch.cat((right[o - 1, : count - o], left[o - 1, : count - o])) for o in offsets]
                         or [right.new_zeros(0)]).to(scores.dtype)
        loss = -(F.logsigmoid(scores) * mask).sum()
        slopes = (torch.sigmoid(scores) - 1).mul_(mask)  # d loss / d score
        grad_center, grad_context = torch.zeros_like(center), torch.zeros_like(context)
        at = 0
        for o in offsets:
            to_right, to_left = slopes[at : at + count - o, None], slopes[at + count - o : at + 2 * (count - o), None]
            at += 2 * (count - o)
            grad_center[:-o].addcmul_(to_right, context[o:])  # center i, context i + o
            grad_context[o:].addcmul_(to_right, center[:-o])
            grad_center[o:].addcmul_(to_left, context[:-o])  # center i + o, context i
            grad_context[:-o].addcmul_(to_left, center[o:])
        # negatives: one set per center, weighted by its pairs
        noise_scores = (noise * center.unsqueeze(1)).sum(-1)  # [C, K] (3x faster than bmm here)
        loss = loss - (F.logsigmoid(-noise_scores).sum(-1) * weights).sum()
        noise_slopes = torch.sigmoid(noise_scores).mul_(weights.unsqueeze(1))  # [C, K]
        grad_center.add_(torch.bmm(noise_slopes.unsqueeze(1), noise).squeeze(1))
        grad_noise = noise_slopes.unsqueeze(2) * center.unsqueeze(1)  # [C, K, d]
        ctx.in_grad = _row_gradient([tokens], [grad_center], in_weight.shape)
        ctx.out_grad = _row_gradient([tokens, negatives.reshape(-1)], [grad_context, grad_noise.view(-1, dim)], out_weight.shape)
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        grads = ctx.in_grad, ctx.out_grad
        del ctx.in_grad, ctx.out_grad
        if grad_loss.item() != 1:  # the trainer scales the loss only when it accumulates micro-batches
            grads = tuple(grad * grad_loss for grad in grads)
        return *grads, None, None, None, None, None


def _row_gradient(rows: list[torch.Tensor], values: list[torch.Tensor], shape: torch.Size) -> torch.Tensor:
    """A sparse gradient with one row per distinct word: the rows of repeated words summed."""
    unique, inverse = _distinct(torch.cat(rows), shape[0])
    summed = values[0].new_zeros(len(unique), shape[1])
    for part, value in zip(inverse.split([len(r) for r in rows]), values):
        summed.index_add_(0, part, value)
    return torch.sparse_coo_tensor(unique.unsqueeze(0), summed, shape, is_coalesced=True, check_invariants=False)


def _distinct(rows: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """torch.unique(rows, return_inverse=True) for ids below `size`: marks in a table of `size` flags
    instead of a sort (3x faster for a batch of word2vec, where the vocabulary is a few times the rows)."""
    if size > 64 * len(rows):
        return torch.unique(rows, return_inverse=True)
    present = torch.zeros(size, dtype=torch.bool)
    present[rows] = True
    unique = present.nonzero().squeeze(1)
    position = torch.empty(size, dtype=torch.long)
    position[unique] = torch.arange(len(unique))
    return unique, position[rows]


class SkipGram(nn.Module):
    """Input ("word") and output ("context") vectors; the input vectors are the ones kept.

    Initialised as word2vec.c does: input rows uniform in +-0.5/dim, output rows zero.
    """

    def __init__(self, vocab_size: int, dim: int):
        super().__init__()
        self.in_vectors = nn.Embedding(vocab_size, dim, sparse=True)
        self.out_vectors = nn.Embedding(vocab_size, dim, sparse=True)
        nn.init.uniform_(self.in_vectors.weight, -0.5 / dim, 0.5 / dim)
        nn.init.zeros_(self.out_vectors.weight)

    def forward(self, batch: SkipGramBatch) -> torch.Tensor:
        """The summed negative-sampling loss: -log s(c.o) per pair, -log s(-c.n) per negative times its pairs."""
        return SkipGramLoss.apply(
            self.in_vectors.weight, self.out_vectors.weight, batch.tokens, batch.right, batch.left, batch.negatives,
            batch.weights,
        )

    def example_input(self, words: int = 4, window: int = 2, negatives: int = 5) -> tuple[SkipGramBatch]:
        """A dummy batch for the parameter summary."""
        tokens = torch.zeros(words, dtype=torch.long)
        mask = torch.ones(window, words, dtype=torch.bool)
        return (SkipGramBatch(tokens, mask, mask, torch.zeros(words, negatives, dtype=torch.long), torch.ones(words), words),)


class RowAdam(torch.optim.Optimizer):
    """Adam for sparse gradients, updating only the rows a batch touched (torch.optim.SparseAdam's rule:
    moments decay only where a row has a gradient), in fewer passes: gather the rows' moments, update
    them, write them back, add the step. A gradient whose rows are already distinct and sorted (as
    SkipGramLoss gives them) is used as it is, without a merge."""

    def __init__(self, params, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(param)
                    state["exp_avg_sq"] = torch.zeros_like(param)
                state["step"] += 1
                step = state["step"].item()
                rows, values = _distinct_rows(param.grad)
                mean = state["exp_avg"].index_select(0, rows).lerp_(values, 1 - beta1)
                square = state["exp_avg_sq"].index_select(0, rows).mul_(beta2).addcmul_(values, values, value=1 - beta2)
                state["exp_avg"].index_copy_(0, rows, mean)
                state["exp_avg_sq"].index_copy_(0, rows, square)
                # lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps), with the corrections taken out of the row passes
                correction = math.sqrt(1 - beta2**step)
                denominator = square.sqrt_().add_(group["eps"] * correction)
                param.index_add_(0, rows, mean.div_(denominator), alpha=-group["lr"] * correction / (1 - beta1**step))


def _distinct_rows(grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows and values of a sparse gradient, merged only where a row appears twice or out of order."""
    rows = grad._indices()[0]
    if len(rows) > 1 and not bool((rows[1:] > rows[:-1]).all()):
        grad = grad.coalesce()
        rows = grad._indices()[0]
    return rows, grad._values()
