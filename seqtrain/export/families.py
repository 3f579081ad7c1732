"""One adapter per task family: the graphs it exports, their samples from test batches, its part of the sidecar.

A new family plugs in with one function decorated `@exporter(ItsTaskClass)`
that wraps its model into tensor-only modules (`Graph`) and says in the
sidecar what a caller needs to feed them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from seqtrain.data.pairs import BOS, EOS
from seqtrain.data.text import _BREAK, _TOKEN
from seqtrain.export.core import Export, Graph, Runner, as_arrays, exporter, sample_batches
from seqtrain.inference import Trained
from seqtrain.models.recurrent import padding_mask
from seqtrain.models.seq2seq import Memory
from seqtrain.tasks.classification import TextClassificationTask
from seqtrain.tasks.forecasting import ForecastTask
from seqtrain.tasks.language_modeling import EOS as LM_EOS
from seqtrain.tasks.language_modeling import LanguageModelTask
from seqtrain.tasks.seq2seq import Seq2SeqTask, decode_max_len

BATCH = {0: "batch"}
#: how the project's word tokenizer splits text, for callers without seqtrain (seqtrain.data.text.tokenize)
WORD_TOKENIZER = {
    "rule": "words",
    "steps": "replace break_pattern (ignoring case) by a space, lower-case, then take every match of token_pattern",
    "break_pattern": _BREAK.pattern,
    "token_pattern": _TOKEN.pattern,
}
CHAR_TOKENIZER = {"rule": "chars", "steps": "every character is one token"}
#: word language models read whitespace-separated words (seqtrain.tasks.language_modeling.word_tokens)
WHITESPACE_TOKENIZER = {"rule": "whitespace", "steps": "split each line on whitespace; every line ends with the token <eos>"}


def tokenizer(level: str) -> dict[str, str]:
    return CHAR_TOKENIZER if level == "char" else WORD_TOKENIZER


def state_names(lstm: bool, suffix: str = "") -> list[str]:
    return ["h" + suffix, "c" + suffix] if lstm else ["h" + suffix]


def as_state(parts: tuple[torch.Tensor, ...], lstm: bool):
    return tuple(parts) if lstm else parts[0]


def flat_state(state) -> tuple[torch.Tensor, ...]:
    return tuple(state) if isinstance(state, tuple) else (state,)


# ------------------------------------------------------------------ classifiers
class Probabilities(nn.Module):
    """tokens [B, T] (right-padded with 0), lengths [B] -> probabilities [B, C] (one per label)."""

    def __init__(self, model: nn.Module, multi_label: bool):
        super().__init__()
        self.model, self.multi_label = model, multi_label

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        logits = self.model(tokens, lengths)
        if self.multi_label:
            return torch.sigmoid(logits)
        if logits.dim() == 1:
            positive = torch.sigmoid(logits)
            return torch.stack([1 - positive, positive], -1)
        return torch.softmax(logits, -1)


def label_accuracy(loader: Any, multi_label: bool = False, threshold: float = 0.5):
    """The test accuracy of a `classifier` graph (tokens or values, lengths -> probabilities) over batches of
    (tokens, lengths, targets); a multi-label text counts when every label is right."""

    def accuracy(runners: dict[str, Runner]) -> tuple[str, float, str]:
        correct = total = 0
        for batch in loader:
            probabilities = runners["classifier"](as_arrays((batch.tokens, batch.lengths)))[0]
            truth = batch.targets.numpy()
            if multi_label:
                correct += int(((probabilities >= threshold) == (truth == 1)).all(-1).sum())
            else:
                correct += int((probabilities.argmax(-1) == truth).sum())
            total += len(truth)
        return "accuracy", correct / max(total, 1), "max"

    return accuracy


@exporter(TextClassificationTask)
def classifier(trained: Trained, loader: Any) -> Export:
    meta = trained.task.meta
    module = Probabilities(trained.model, meta.multi_label).eval()
    graph = Graph(
        "classifier", module, ["tokens", "lengths"], ["probabilities"],
        {"tokens": {0: "batch", 1: "steps"}, "lengths": BATCH, "probabilities": BATCH},
        [(batch.tokens, batch.lengths) for batch in sample_batches(loader)],
    )
    sidecar = {
        "family": "classifier",
        "vocab": meta.vocab,
        "pad_id": 0,
        "unk_id": meta.vocab.index("<unk>"),
        "tokenizer": WORD_TOKENIZER,
        "max_len": meta.max_len,
        "max_len_rule": "0: whole texts; else keep each text's last max_len tokens; an empty text is one <unk>",
        "labels": meta.labels,
        "multi_label": meta.multi_label,
        "threshold": meta.threshold,
    }
    return Export([graph], sidecar, label_accuracy(loader, meta.multi_label, meta.threshold))


# ------------------------------------------------------------ language models
class LanguageModelStep(nn.Module):
    """token [B] and state (h, and c for an LSTM: [layers, B, H]) -> scores [B, V] for the next token, and the new state."""

    def __init__(self, model: nn.Module, lstm: bool):
        super().__init__()
        self.model, self.lstm = model, lstm

    def forward(self, token: torch.Tensor, *state: torch.Tensor):
        scores, new = self.model(token[:, None], as_state(state, self.lstm))
        return (scores[:, -1], *flat_state(new))


@exporter(LanguageModelTask)
def language_model(trained: Trained, loader: Any) -> Export:
    model, meta = trained.model, trained.task.meta
    lstm = isinstance(model.rnn, nn.LSTM)
    module = LanguageModelStep(model, lstm).eval()
    samples = []
    for inputs, _ in sample_batches(loader):
        layers, batch, hidden = model.rnn.num_layers, inputs.shape[0], model.rnn.hidden_size
        zeros = torch.zeros(layers, batch, hidden)
        samples.append((inputs[:, 0], *([zeros, zeros] if lstm else [zeros])))
        read = max(inputs.shape[1] // 2, 1)
        _, state = model(inputs[:, :read])  # a state that has read part of the batch
        samples.append((inputs[:, read], *flat_state(state)))
    names = state_names(lstm)
    dynamic = {"token": BATCH, "scores": BATCH} | {n: {1: "batch"} for n in names + state_names(lstm, "_out")}
    graph = Graph("step", module, ["token", *names], ["scores", *state_names(lstm, "_out")], dynamic, samples)
    sidecar = {
        "family": "language_model",
        "level": meta.level,
        "vocab": meta.vocab,
        "unk_id": meta.vocab.index("<unk>") if "<unk>" in meta.vocab else None,
        "tokenizer": CHAR_TOKENIZER if meta.level == "char" else WHITESPACE_TOKENIZER,
        "eos": LM_EOS if LM_EOS in meta.vocab else None,
        "scores": "log_probabilities" if model.adaptive else "logits",
        "state": {"layers": model.rnn.num_layers, "hidden": model.rnn.hidden_size, "initial": "zeros"},
        "sampling": "feed the prime's tokens one step each from a zero state; then sample the next token from "
        "softmax(scores / temperature) and feed it back",
    }
    return Export([graph], sidecar)


# -------------------------------------------------------------------- seq2seq
class Encoder(nn.Module):
    """source [B, S], lengths [B] -> memory [B, S, Henc], (keys [B, S, H] with attention), the decoder's first state."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, source: torch.Tensor, lengths: torch.Tensor):
        memory = self.model.encode(source, lengths)
        keys = () if memory.keys is None else (memory.keys,)
        return (memory.outputs, *keys, *flat_state(memory.state))


class DecoderStep(nn.Module):
    """token [B], state, (lengths, memory, keys with attention) -> logits [B, V] over the target vocabulary, new state."""

    def __init__(self, model: nn.Module, lstm: bool):
        super().__init__()
        self.model, self.lstm = model, lstm

    def forward(self, token: torch.Tensor, *rest: torch.Tensor):
        parts = 2 if self.lstm else 1
        state = as_state(rest[:parts], self.lstm)
        memory = None
        if self.model.attention is not None:
            lengths, outputs, keys = rest[parts:]
            memory = Memory(outputs, keys, padding_mask(lengths, outputs.shape[1]), state)
        logits, new = self.model.decode(token[:, None], state, memory)
        return (logits[:, -1], *flat_state(new))


@exporter(Seq2SeqTask)
def seq2seq(trained: Trained, loader: Any) -> Export:
    model, meta = trained.model, trained.task.meta
    lstm, attention = model.cell == "lstm", model.attention is not None
    states = state_names(lstm)
    encoder = Encoder(model).eval()
    decoder = DecoderStep(model, lstm).eval()
    encoder_samples, decoder_samples = [], []
    for batch in sample_batches(loader):
        source, lengths = batch.source, batch.source_lengths
        encoder_samples.append((source, lengths))
        memory = model.encode(source, lengths)
        extra = (lengths, memory.outputs, memory.keys) if attention else ()
        state, token = memory.state, torch.full((len(source),), model.bos, dtype=torch.long)
        for t in range(min(batch.target.shape[1], 3)):  # the first steps, teacher-forced
            decoder_samples.append((token, *flat_state(state), *extra))
            _, state = model.decode(token[:, None], state, memory)
            token = batch.target[:, t]
    memory_names = ["memory", "keys"] if attention else ["memory"]
    source_axes = {"source": {0: "batch", 1: "source_steps"}, "lengths": BATCH, "memory": {0: "batch", 1: "source_steps"},
                   "keys": {0: "batch", 1: "source_steps"}}
    graphs = [
        Graph("encoder", encoder, ["source", "lengths"], memory_names + states,
              source_axes | {n: {1: "batch"} for n in states}, encoder_samples),
        Graph("decoder_step", decoder, ["token", *states, *(["lengths", "memory", "keys"] if attention else [])],
              ["logits", *state_names(lstm, "_out")],
              {"token": BATCH, "logits": BATCH} | {n: {1: "batch"} for n in states + state_names(lstm, "_out")}
              | ({k: v for k, v in source_axes.items() if k in ("lengths", "memory", "keys")} if attention else {}),
              decoder_samples),
    ]
    sidecar = {
        "family": "seq2seq",
        "source_vocab": meta.source_vocab,
        "target_vocab": meta.target_vocab,
        "source_tokenizer": tokenizer(meta.source_level),
        "target_level": meta.target_level,
        "join": "" if meta.target_level == "char" else " ",
        "pad_id": 0,
        "unk_id": 1,
        "bos_id": meta.target_vocab.index(BOS),
        "eos_id": meta.target_vocab.index(EOS),
        "max_output_len": decode_max_len(meta),
        "decoding": "encode once; from token <bos> and the encoder's state, run decoder_step, never pick <pad> or "
        "<bos>, feed the pick back until <eos> or max_output_len",
    }
    return Export(graphs, sidecar)


# ----------------------------------------------------------------- forecasters
class Forecast(nn.Module):
    """values [B, window, F] in the columns' own units -> forecast [B, horizon] of the target, in its own units."""

    def __init__(self, model: nn.Module, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.model = model
        self.register_buffer("mean", mean.float())
        self.register_buffer("std", std.float())

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        predicted = self.model((values - self.mean) / self.std)
        if predicted.dim() == 3:  # every step forecasts: the last one looks furthest
            predicted = predicted[:, -1]
        return predicted * self.std[0] + self.mean[0]


@exporter(ForecastTask)
def forecaster(trained: Trained, loader: Any) -> Export:
    meta = trained.task.meta
    module = Forecast(trained.model, meta.mean, meta.std).eval()
    mean, std = module.mean, module.std
    graph = Graph(
        "forecaster", module, ["values"], ["forecast"], {"values": BATCH, "forecast": BATCH},
        [(x * std + mean,) for x, _ in sample_batches(loader)],
    )

    def mse(runners: dict[str, Runner]) -> tuple[str, float, str]:
        total, count = 0.0, 0
        for x, y in loader:
            predicted = runners["forecaster"](as_arrays((x * std + mean,)))[0]
            truth = (y[:, -1] * std[0] + mean[0]).numpy()
            total += float(np.square(predicted.astype(np.float64) - truth).sum())
            count += truth.size
        return "mse", total / max(count, 1), "min"

    sidecar = {
        "family": "forecaster",
        "features": list(meta.features),
        "target": meta.target,
        "window": meta.window,
        "horizon": meta.horizon,
        "mean": meta.mean.tolist(),
        "std": meta.std.tolist(),
        "input_rule": "the last `window` rows of the feature columns, in their own units (the graph normalises)",
    }
    return Export([graph], sidecar, mse)
