"""Sampling from a language model: stateful, so each new token costs one recurrent step.

The prime is read once; after that only the newest token is fed, with the
carried hidden state, instead of re-reading the whole prefix for every token,
through the model's one-step path (`LanguageModel.step`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import nn

from seqtrain.errors import SeqtrainError


def check_sampling(temperature: float, top_k: int | None, vocab_size: int) -> None:
    """Refuse a temperature that is not positive and a top-k outside 1..vocabulary size."""
    if not 0 < temperature < math.inf:
        raise SeqtrainError(f"--temperature must be > 0 (got {temperature}); lower is more conservative, 1 samples the model as is")
    if top_k is not None and not 1 <= top_k <= vocab_size:
        raise SeqtrainError(f"--top-k must be between 1 and the vocabulary size {vocab_size} (got {top_k})")


def sample_next(scores: torch.Tensor, temperature: float, top_k: int | None, generator: torch.Generator) -> int:
    """One token id from scores [V] (logits or log-probabilities), sharpened by temperature and optionally cut to the k most likely."""
    scores = scores.float().cpu()
    scaled = scores / temperature
    if top_k is not None and top_k < scaled.shape[-1]:
        threshold = torch.topk(scaled, top_k).values[-1]
        scaled = scaled.masked_fill(scaled < threshold, float("-inf"))
    try:
        return int(torch.multinomial(torch.softmax(scaled, dim=-1), 1, generator=generator))
    except RuntimeError:  # so cold that scaling overflowed (the softmax is NaN): the limit is greedy
        return int(scores.argmax())


@torch.inference_mode()
def sample(
    model: nn.Module,
    prime: list[int],
    length: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int | None = None,
) -> Iterator[int]:
    """Yield `length` sampled token ids, one at a time, after reading `prime` (at least one id) once.

    The same seed, model and arguments give the same tokens.
    """
    if not prime:
        raise SeqtrainError("generation needs at least one prime token")
    vocab_size = model.vocab_size
    check_sampling(temperature, top_k, vocab_size)
    generator = torch.Generator()
    if seed is None:
        generator.seed()  # a fresh random seed for this sampler only; the global RNG is left alone
    else:
        generator.manual_seed(seed)
    model.eval()
    device = next(model.parameters()).device
    scores, state = model(torch.tensor([prime], device=device))
    scores = scores[0, -1]
    fed = torch.empty(1, dtype=torch.long, device=device)  # one buffer for every step's input
    for index in range(length):
        token = sample_next(scores, temperature, top_k, generator)
        yield token
        if index + 1 < length:
            scores, state = model.step(fed.fill_(token), state)
            scores = scores[0]
