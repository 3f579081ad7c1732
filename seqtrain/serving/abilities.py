"""Per ability: what a request holds, how it is checked against the limits, and how a batch of inputs runs.

A new family plugs in with one `Ability` registered under its task's
ability name (e.g. "tag"): a pydantic request model, `inputs` (the request's
items and the key that items must share to be batched together, after
checking them), `run` (one model call over many items) and `respond`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from seqtrain.data.conll import tokenize_sentence
from seqtrain.inference import Trained
from seqtrain.tasks.tagging import render


@dataclass
class Limits:
    """Bounds on one request; a request past them gets a 4xx naming the bound."""

    max_body_bytes: int = 1 << 20
    max_texts: int = 64
    max_chars: int = 20_000
    max_length: int = 2_000  # generated tokens
    max_beam: int = 8
    max_rows: int = 10_000  # forecast input rows


class BadRequest(Exception):
    """A request the server refuses, with its HTTP status and a one-line reason."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


class PredictRequest(BaseModel):
    texts: list[str] = Field(description="Texts to classify.", examples=[["A wonderful film."]])
    top_k: int = Field(1, ge=1, description="The k most likely labels per text (one-label models).")


class TranslateRequest(BaseModel):
    texts: list[str] = Field(description="Texts to translate.", examples=[["the cat sleeps"]])
    beam: int = Field(1, ge=1, description="Beam width; 1 decodes greedily (and batches).")
    max_len: int = Field(0, ge=0, description="Longest output in tokens; 0 lets the run choose.")


class ForecastRequest(BaseModel):
    rows: list[list[float]] = Field(description="Rows of the model's columns (target first), oldest first; the last `window` are read.",
                                    examples=[[[0.1], [0.2], [0.3]]])


class GenerateRequest(BaseModel):
    prime: str = Field("", description="Text to start from.")
    length: int = Field(200, ge=0, description="Tokens to generate.")
    temperature: float = Field(1.0, gt=0, description="Below 1 is more conservative.")
    top_k: int | None = Field(None, ge=1, description="Sample among the k most likely tokens.")
    seed: int | None = Field(None, description="Seed for repeatable text.")


@dataclass
class Ability:
    request: type[BaseModel]
    inputs: Callable[[Trained, Any, Limits], tuple[list[Any], Hashable]]
    run: Callable[[Trained, list[Any], Hashable], list[Any]]
    respond: Callable[[list[Any]], dict[str, Any]]
    summary: str


def check_texts(texts: list[str], limits: Limits) -> None:
    if not texts:
        raise BadRequest("'texts' is empty: send at least one text")
    if len(texts) > limits.max_texts:
        raise BadRequest(f"{len(texts)} texts in one request; the limit is {limits.max_texts}", 413)
    longest = max(len(t) for t in texts)
    if longest > limits.max_chars:
        raise BadRequest(f"a text of {longest} characters; the limit is {limits.max_chars}", 413)


def predict_inputs(trained: Trained, request: PredictRequest, limits: Limits) -> tuple[list[Any], Hashable]:
    check_texts(request.texts, limits)
    return request.texts, request.top_k


#: What a model call over a group of texts costs, in units of one text-character through one step: a fixed cost
#: per call (Python and dispatch around the layers, as much as about 2,000 characters of text), a small one per
#: step whatever the batch, and one per row and step, padding included. Fitted to the IMDB default classifier
#: (a bidirectional GRU, one thread) over batches of 1 to 32 texts of 16 to 512 tokens: about 2.9 ms per call,
#: 6.7 us per token and row, the per-step part within the noise.
CALL_COST, STEP_COST, ROW_COST = 2000.0, 0.25, 1.0
#: a group is at most this many texts (bounds the search below for a --max-batch in the thousands)
LONGEST_GROUP = 256


def length_groups(lengths: list[int]) -> list[list[int]]:
    """Indices of `lengths`, split into the groups whose padded calls cost least in all (CALL_COST ...).

    A batch is padded to its longest text: one long review among short ones would make the recurrent layers
    step through its padding for all of them, while one call per text pays the per-call cost every time. Sorted
    by length, the cheapest split into consecutive runs is found exactly (dynamic programming, O(n * LONGEST_GROUP)).
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    best = [0.0] + [float("inf")] * len(order)
    cut = [0] * (len(order) + 1)
    for end in range(1, len(order) + 1):
        longest = lengths[order[end - 1]]
        for begin in range(max(0, end - LONGEST_GROUP), end):
            cost = best[begin] + CALL_COST + longest * (STEP_COST + ROW_COST * (end - begin))
            if cost < best[end]:
                best[end], cut[end] = cost, begin
    groups, end = [], len(order)
    while end:
        groups.append(order[cut[end] : end])
        end = cut[end]
    return groups[::-1]


def by_length(texts: list[str], run: Callable[[list[str]], list[Any]]) -> list[Any]:
    """`run` over groups of texts of similar length (characters stand in for tokens), answers in the texts' order."""
    answers: list[Any] = [None] * len(texts)
    for group in length_groups([len(t) for t in texts]):
        for i, answer in zip(group, run([texts[i] for i in group])):
            answers[i] = answer
    return answers


def predict_run(trained: Trained, texts: list[str], top_k: Hashable) -> list[Any]:
    predictions = by_length(texts, lambda group: trained.task.predict(trained.model, group, trained.device, top_k))
    return [[{"label": p.label, "probability": p.probability} for p in row] for row in predictions]


def translate_inputs(trained: Trained, request: TranslateRequest, limits: Limits) -> tuple[list[Any], Hashable]:
    check_texts(request.texts, limits)
    if request.beam > limits.max_beam:
        raise BadRequest(f"beam {request.beam}; the limit is {limits.max_beam}", 413)
    if request.max_len > limits.max_length:
        raise BadRequest(f"max_len {request.max_len}; the limit is {limits.max_length}", 413)
    if any(not t.strip() for t in request.texts):
        raise BadRequest("cannot translate an empty text")
    return request.texts, (request.beam, request.max_len)


def translate_run(trained: Trained, texts: list[str], key: Hashable) -> list[Any]:
    beam, max_len = key
    return by_length(texts, lambda group: trained.task.translate(trained.model, group, trained.device, beam, 1.0, max_len))


def forecast_inputs(trained: Trained, request: ForecastRequest, limits: Limits) -> tuple[list[Any], Hashable]:
    meta = trained.task.meta
    rows, width = request.rows, len(meta.features)
    if len(rows) > limits.max_rows:
        raise BadRequest(f"{len(rows)} rows; the limit is {limits.max_rows}", 413)
    if len(rows) < meta.window:
        raise BadRequest(f"{len(rows)} rows; the model reads the last {meta.window}")
    if any(len(row) != width for row in rows):
        raise BadRequest(f"every row needs {width} values ({', '.join(meta.features)})")
    window = np.asarray(rows[-meta.window :], dtype=np.float32)
    if not np.isfinite(window).all():
        raise BadRequest("the rows hold a value that is not a finite number")
    return [window], None


def forecast_run(trained: Trained, windows: list[np.ndarray], key: Hashable) -> list[Any]:
    return trained.task.forecast_windows(trained.model, np.stack(windows), trained.device)


class TagRequest(BaseModel):
    texts: list[str] = Field(description="Sentences to tag, split into tokens as `seqtrain tag` splits them.",
                             examples=[["Anna met Peter in Rome ."]])


def tag_inputs(trained: Trained, request: TagRequest, limits: Limits) -> tuple[list[Any], Hashable]:
    check_texts(request.texts, limits)
    sentences = [tokenize_sentence(text) for text in request.texts]
    if not all(sentences):
        raise BadRequest("cannot tag a text without tokens")
    return sentences, None


def tag_run(trained: Trained, sentences: list[list[str]], key: Hashable) -> list[Any]:
    """Per sentence: tokens, tags (in the training data's scheme) and entities, as `seqtrain tag --format json` writes them."""
    plain = trained.task.meta.scheme == "plain"
    tagged = trained.task.tag(trained.model, sentences, trained.device)
    return [json.loads(render(tokens, tags, "json", plain)) for tokens, tags in zip(sentences, tagged)]


ABILITIES: dict[str, Ability] = {
    "predict": Ability(PredictRequest, predict_inputs, predict_run, lambda out: {"predictions": out},
                       "Classify texts: the most likely labels with their probabilities, per text."),
    "translate": Ability(TranslateRequest, translate_inputs, translate_run, lambda out: {"translations": out},
                         "Translate texts (greedy requests are batched together)."),
    "forecast": Ability(ForecastRequest, forecast_inputs, forecast_run, lambda out: {"forecast": out[0]},
                        "The next `horizon` target values after the rows given, in the target's units."),
    "tag": Ability(TagRequest, tag_inputs, tag_run, lambda out: {"sentences": out},
                   "Tag each token of each sentence; the entities found, for span tags."),
}


def check_generate(trained: Trained, request: GenerateRequest, limits: Limits) -> None:
    if request.length > limits.max_length:
        raise BadRequest(f"length {request.length}; the limit is {limits.max_length}", 413)
    if len(request.prime) > limits.max_chars:
        raise BadRequest(f"a prime of {len(request.prime)} characters; the limit is {limits.max_chars}", 413)
