"""Sampling from a language model: stateful, so each new token costs one recurrent step.

The prime is read once; after that only the newest token is fed, with the
carried hidden state, instead of re-reading the whole prefix for every token,
through the model's one-step path (`LanguageModel.stepper`, bound once per generation).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator

import torch
from torch import nn

from seqtrain.errors import SeqtrainError

#: about how many exponential draws `TokenSampler` makes at once (rows of one vocabulary each, at least one row)
NOISE_NUMBERS = 1 << 14


def check_sampling(temperature: float, top_k: int | None, vocab_size: int) -> None:
    """Refuse a temperature that is not positive and a top-k outside 1..vocabulary size."""
    if not 0 < temperature < math.inf:
        raise SeqtrainError(f"--temperature must be > 0 (got {temperature}); lower is more conservative, 1 samples the model as is")
    if top_k is not None and not 1 <= top_k <= vocab_size:
        raise SeqtrainError(f"--top-k must be between 1 and the vocabulary size {vocab_size} (got {top_k})")


class TokenSampler:
    """Token ids from scores [V] (logits or log-probabilities), sharpened by temperature and optionally cut to the k most likely.

    Each id is the one `torch.multinomial(softmax(scores / temperature), 1,
    generator=generator)` returns, draw for draw: for one sample multinomial
    takes argmax(p / q) with q ~ Exp(1), one q per vocabulary entry, and that
    is what this computes, but with the exponentials drawn for many tokens in
    one call (the generator's stream is the same) and without multinomial's
    per-call checks (three reductions, each read back). Where
    scaling overflows (the softmax is NaN: a temperature so low that the limit
    is greedy) the id is the argmax of the scores and no draw is used, as
    multinomial refuses such input before drawing.
    """

    def __init__(self, vocab_size: int, temperature: float, top_k: int | None, generator: torch.Generator):
        self.temperature = torch.tensor(temperature, dtype=torch.float32)  # a tensor divides faster than a Python number, alike
        self.top_k = top_k if top_k is not None and top_k < vocab_size else None
        self.generator = generator
        self.noise = torch.empty(max(1, NOISE_NUMBERS // vocab_size), vocab_size)
        self.rows = self.noise.unbind()  # views, refilled in place
        self.row = len(self.rows)  # every row used: the first call draws
        self.ratio = torch.empty(vocab_size)
        self.ratios = self.ratio.numpy()  # the same memory: numpy's argmax and indexing cost less per token than torch's

    def __call__(self, scores: torch.Tensor) -> int:
        scaled = torch.div(scores.float().cpu(), self.temperature)
        if self.top_k is not None:
            threshold = torch.topk(scaled, self.top_k).values[-1]
            scaled.masked_fill_(scaled < threshold, -math.inf)
        if self.row == len(self.rows):
            self.noise.exponential_(generator=self.generator)
            self.row = 0
        torch.div(torch.softmax(scaled, -1), self.rows[self.row], out=self.ratio)
        token = int(self.ratios.argmax())  # the first maximum, or the first NaN, as torch's argmax
        if self.ratios[token] != self.ratios[token]:  # NaN
            return int(scores.argmax())
        self.row += 1
        return token


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
    draw = TokenSampler(vocab_size, temperature, top_k, generator)
    model.eval()
    step = model.stepper()
    device = next(model.parameters()).device
    with torch.inference_mode():
        scores, state = model(torch.tensor([prime], device=device))
    scores = scores[0, -1]
    fed = torch.empty(1, dtype=torch.long, device=device)  # one buffer for every step's input
    for index in range(length):
        token = draw(scores)
        yield token
        if index + 1 < length:
            with torch.inference_mode():  # per step, not around the yield: the caller's code runs outside it
                scores, state = step(fed.fill_(token), state)
                scores = scores[0]


def gathered(pieces: Iterable[str], seconds: float) -> Iterator[str]:
    """Text pieces joined into one chunk per `seconds`: still a stream to the eye, at one write (or network
    send) per few hundred characters instead of one per token, which would cost about a tenth of the generation time."""
    pending, shown = [], time.monotonic()
    for text in pieces:
        pending.append(text)
        if time.monotonic() - shown >= seconds:
            yield "".join(pending)
            pending.clear()
            shown = time.monotonic()
    yield "".join(pending)
