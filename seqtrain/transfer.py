"""What a text classifier takes from elsewhere, and shows of itself.

- Pretrained vectors (--embeddings): which vocabulary words they cover, the share of training tokens
  those words make up, and the most frequent words they miss.
- A word-level language model (--init-from RUN): its embedding rows, mapped word by word onto the
  classifier's vocabulary, and its recurrent weights, layer by layer into the encoder's forward
  direction (a backward direction, which a left-to-right LM does not have, keeps its fresh weights).
- How those transferred weights are fine-tuned (after ULMFiT): fixed for the first epochs while the
  fresh ones train (--unfreeze-epochs), and at a fraction of the learning rate (--lr-pretrained-scale).
- The trained embedding layer in TensorBoard's projector (--log-embeddings).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from seqtrain.data.text import PAD, UNK
from seqtrain.errors import SeqtrainError
from seqtrain.training import distributed

#: words shown in the projector (the most frequent): more makes TensorBoard's tab slow to load
PROJECTOR_WORDS = 10000
#: how many of the most frequent words without a pretrained vector the start-of-run report names
MISSING_SHOWN = 20


@dataclass
class Coverage:
    covered: int  # vocabulary words with a pretrained vector
    missing: int  # vocabulary words without one
    token_share: float | None  # share of training tokens (of vocabulary words) that have a vector
    top_missing: list[str]  # the most frequent words without one

    def lines(self) -> list[str]:
        total = max(self.covered + self.missing, 1)
        tokens = "" if self.token_share is None else f", {self.token_share:.1%} of the training tokens"
        lines = [f"pretrained embeddings cover {self.covered / total:.1%} of the vocabulary "
                 f"({self.covered:,} words covered, {self.missing:,} missing{tokens})"]
        if self.top_missing:
            lines.append("most frequent words without a vector: " + " ".join(self.top_missing))
        return lines


def coverage_of(vocab: list[str], found: torch.Tensor, counts: dict[str, int] | None = None) -> Coverage:
    """Coverage of a vocabulary (specials left out) given which rows were found; `counts` are training frequencies."""
    real = [i for i, word in enumerate(vocab) if word not in (PAD, UNK)]
    missing = [vocab[i] for i in real if not found[i]]
    if counts:
        missing.sort(key=lambda w: -counts.get(w, 0))  # stable: vocabulary order among equals
        total = sum(counts.get(vocab[i], 0) for i in real)
        share = sum(counts.get(vocab[i], 0) for i in real if found[i]) / max(total, 1)
    else:
        share = None
    return Coverage(len(real) - len(missing), len(missing), share, missing[:MISSING_SHOWN])


# --------------------------------------------------------------- --init-from
@dataclass
class LanguageModelWeights:
    run: Path
    vocab: list[str]
    state: dict[str, torch.Tensor]
    model: dict[str, Any]  # the LM run's model settings


def language_model_weights(spec: str) -> LanguageModelWeights:
    """A word-level language-model run's vocabulary, weights and model settings, or one line saying why not."""
    from seqtrain.training.checkpoint import load_checkpoint
    from seqtrain.training.runs import resolve_checkpoint

    checkpoint = resolve_checkpoint(spec)
    blob = load_checkpoint(checkpoint)
    meta = blob.get("meta", {})
    if meta.get("level") != "word" or "rnn.weight_ih_l0" not in blob["model"]:
        raise SeqtrainError(
            f"--init-from {spec}: {checkpoint} is a '{blob.get('task')}' run, not a word-level language model "
            "(train one with --task wordlm or wikitext2)"
        )
    return LanguageModelWeights(checkpoint, meta["vocab"], blob["model"], blob["config"]["model"])


def check_fits(lm: LanguageModelWeights, settings) -> None:
    """Refuse, in one line naming the flags that fit, a classifier whose shapes cannot take the LM's weights."""
    want = {"cell": lm.model["cell"], "hidden": lm.model["hidden"], "embed_dim": lm.model["embed_dim"]}
    have = {name: getattr(settings, name) for name in want}
    deep_bidirectional = settings.bidirectional and settings.layers > 1
    loops = settings.recurrent_dropout or settings.layer_norm
    if have != want or settings.layers > lm.model["layers"] or deep_bidirectional or loops:
        flags = f"--cell {want['cell']} --hidden {want['hidden']} --embed-dim {want['embed_dim']}"
        raise SeqtrainError(
            f"--init-from {lm.run.parent}: its {lm.model['layers']}-layer {want['cell'].upper()} of {want['hidden']} units "
            f"over {want['embed_dim']}-dim embeddings does not fit this classifier ({settings.layers} layer(s) "
            f"{settings.cell.upper()} {settings.hidden}, embeddings {settings.embed_dim}"
            f"{', bidirectional' if settings.bidirectional else ''}{', loop cells' if loops else ''}); use {flags} "
            f"--layers 1..{lm.model['layers']} (bidirectional only with one layer; no --recurrent-dropout or --layer-norm)"
        )


def init_from_language_model(model: nn.Module, vocab: list[str], lm: LanguageModelWeights) -> str:
    """Copy the LM's embedding rows (word by word) and recurrent weights into a fresh classifier; a line for the report."""
    rows = {word: i for i, word in enumerate(lm.vocab)}
    source = lm.state["embedding.weight"]
    mapped = 0
    with torch.no_grad():
        for index, word in enumerate(vocab):
            row = rows.get(word)
            if row is not None and word != PAD:
                model.embedding.weight[index] = source[row]
                mapped += 1
        for layer_index, layer in enumerate(model.encoder.layers):
            for name, parameter in layer["fwd"].named_parameters():
                weight = lm.state[f"rnn.{name[:-1]}{layer_index}"]  # weight_ih_l0 <- rnn.weight_ih_l<layer>
                if weight.shape != parameter.shape:
                    raise SeqtrainError(f"--init-from: {name} of layer {layer_index} has shape {tuple(weight.shape)} "
                                        f"in the language model, {tuple(parameter.shape)} here")
                parameter.copy_(weight)
    return (f"initialised from {lm.run.parent}: {mapped:,} of {len(vocab):,} vocabulary rows and "
            f"{len(model.encoder.layers)} recurrent layer(s)")


# ------------------------------------------- --unfreeze-epochs, --lr-pretrained-scale
def transferred_parameters(model: nn.Module, settings) -> list[nn.Parameter]:
    """The weights a classifier took from elsewhere: the embedding (--embeddings or --init-from) and, with
    --init-from, the forward direction of every recurrent layer; none without either."""
    if not (settings.embeddings or settings.init_from):
        return []
    params = [model.embedding.weight]
    if settings.init_from:
        params += [p for layer in model.encoder.layers for p in layer["fwd"].parameters()]
    return params


def check_fine_tuning(settings, epochs: int) -> None:
    """Refuse, in one line, fine-tuning options that have nothing to act on."""
    asked = [flag for flag, on in (("--unfreeze-epochs", settings.unfreeze_epochs),
                                   ("--lr-pretrained-scale", settings.lr_pretrained_scale != 1.0)) if on]
    if settings.ensemble > 1 and (settings.init_from or asked):
        flags = (["--init-from"] if settings.init_from else []) + asked
        raise SeqtrainError(f"{' and '.join(flags)} transfer weights into one model, not into --ensemble "
                            f"{settings.ensemble} members: drop one or the other")
    if asked and not (settings.embeddings or settings.init_from):
        raise SeqtrainError(f"{' and '.join(asked)} act on transferred weights: add --init-from RUN or --embeddings VECTORS, or drop them")
    if settings.unfreeze_epochs and distributed.launched_size() > 1:
        raise SeqtrainError("--unfreeze-epochs changes which weights take gradients mid-run, which distributed "
                            "training cannot follow: drop it, or train in one process")
    if settings.unfreeze_epochs > epochs:
        raise SeqtrainError(f"--unfreeze-epochs {settings.unfreeze_epochs} is more than --epochs {epochs}: "
                            "lower it, or raise --epochs")


def parameter_groups(model: nn.Module, settings, lr: float) -> list[dict[str, Any]]:
    """The optimizer's groups: fresh weights at --lr, transferred ones at --lr x --lr-pretrained-scale."""
    transferred = {id(p) for p in transferred_parameters(model, settings)}
    fresh = [p for p in model.parameters() if id(p) not in transferred]
    taken = [p for p in model.parameters() if id(p) in transferred]
    return [{"params": fresh, "lr": lr}, {"params": taken, "lr": lr * settings.lr_pretrained_scale}]


def fine_tuning_note(settings) -> str | None:
    """A start-of-run line saying how the transferred weights are trained, where that differs from the rest."""
    parts = []
    if settings.unfreeze_epochs:
        parts.append(f"fixed for the first {settings.unfreeze_epochs} epoch(s)")
    if settings.lr_pretrained_scale != 1.0:
        parts.append(f"at {settings.lr_pretrained_scale:g} x the learning rate")
    return f"transferred weights: {', then '.join(parts)}" if parts else None


# ----------------------------------------------------------- --log-embeddings
def log_embedding_layer(log, weight: torch.Tensor, vocab: list[str], step: int) -> None:
    """The embedding rows of the most frequent words (specials left out) for TensorBoard's projector."""
    keep = [i for i, word in enumerate(vocab) if word not in (PAD, UNK)][:PROJECTOR_WORDS]
    log.embedding("embedding", weight.detach().cpu()[keep], [vocab[i] for i in keep], step)
