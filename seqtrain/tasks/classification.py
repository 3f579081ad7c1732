"""What every text-classification task shares: settings, metadata, model, loss, metrics and prediction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from seqtrain.config import ClassifierData, ClassifierModel, Schema, TrainSettings
from seqtrain.data.batching import Batch
from seqtrain.data.text import Vocab, tokenize
from seqtrain.data.vectors import embedding_matrix, resolve_vectors, vector_dim
from seqtrain.models.classifier import SequenceClassifier
from seqtrain.tasks.base import Meta, StepContext, StepResult, Task, TaskData
from seqtrain.transfer import (
    Coverage, LanguageModelWeights, check_fits, coverage_of, init_from_language_model, language_model_weights,
    log_embedding_layer,
)


@dataclass
class ClassifierMeta(Meta):
    """Vocabulary, label names and the length cut that predictions must repeat."""

    vocab: list[str]
    labels: list[str]
    max_len: int = 0


@dataclass
class Prediction:
    label: str
    probability: float


class TextClassificationTask(Task):
    """Subclasses implement `prepare` with loaders of `Batch`, calling `start_meta` for a fresh run."""

    schema: ClassVar[Schema] = Schema(TrainSettings, ClassifierModel, ClassifierData)
    meta_type = ClassifierMeta
    monitor = "accuracy"
    monitor_mode = "max"
    metric_names = ("loss", "accuracy")
    headline = "accuracy"
    ability = "predict"

    def __init__(self, config):
        super().__init__(config)
        self.pretrained: torch.Tensor | None = None  # embedding rows for a fresh model with --embeddings
        self.coverage: Coverage | None = None
        self.language_model: LanguageModelWeights | None = None  # --init-from, for a fresh model
        self.transfer_notes: list[str] = []

    def validate(self) -> None:
        # The vectors decide the embedding size; resolved here so config.toml records the size the model has.
        if self.config.model.embeddings:
            self.config.model.embed_dim = vector_dim(self.config.model.embeddings)

    def start_meta(self, meta: ClassifierMeta, counts: dict[str, int] | None = None) -> ClassifierMeta:
        """Keep a fresh run's meta, and look up what --embeddings and --init-from bring (`counts`: training frequencies)."""
        self.meta = meta
        if self.config.model.embeddings:
            vectors = resolve_vectors(self.config.model.embeddings, self.config.data.cache_dir, self.config.data.mirror)
            self.pretrained, found = embedding_matrix(vectors, Vocab(meta.vocab), self.config.train.seed)
            self.coverage = coverage_of(meta.vocab, found, counts)
        if self.config.model.init_from:
            self.language_model = language_model_weights(self.config.model.init_from)
            check_fits(self.language_model, self.config.model)
        return meta

    def notes(self) -> list[str]:
        return ([] if self.coverage is None else self.coverage.lines()) + self.transfer_notes

    def build_model(self, meta: ClassifierMeta) -> nn.Module:
        model = SequenceClassifier(len(meta.vocab), len(meta.labels), self.config.model)
        if self.pretrained is not None:  # only for a fresh model: a checkpoint's weights already hold the vectors
            model.embedding.weight.data.copy_(self.pretrained)
        if self.language_model is not None:  # likewise
            self.transfer_notes.append(init_from_language_model(model, meta.vocab, self.language_model))
        model.embedding.weight.requires_grad_(not self.config.model.freeze_embeddings)
        return model

    def on_epoch_end(self, model: nn.Module, data, log, epoch: int) -> None:
        if self.config.model.log_embeddings and epoch >= self.config.train.epochs:
            log_embedding_layer(log, model.embedding.weight, self.meta.vocab, epoch)

    def default_meta(self) -> ClassifierMeta:
        size = self.config.data.max_vocab or 20000
        return ClassifierMeta(["<pad>", "<unk>"] + [f"w{i}" for i in range(size - 2)], ["neg", "pos"])

    def extra_rows(self, model: nn.Module, data: TaskData) -> dict[str, dict[str, dict[str, float]]]:
        """The majority baseline: always answering the label most frequent in training."""
        train = getattr(data.train, "targets", None)
        if train is None or not len(train):
            return {}
        majority = int(torch.bincount(train).argmax())
        rows = {}
        for split in ("val", "test"):
            targets = getattr(getattr(data, split), "targets", None)
            if targets is not None and len(targets):
                rows[split] = {"majority": {"accuracy": (targets == majority).float().mean().item()}}
        return rows

    def step(self, model: nn.Module, batch: Batch, state: Any, ctx: StepContext) -> StepResult:
        logits = model(batch.tokens, batch.lengths)
        if logits.dim() == 1:
            loss = F.binary_cross_entropy_with_logits(logits, batch.targets.float())
            predicted = (logits > 0).long()
        else:
            loss = F.cross_entropy(logits, batch.targets)
            predicted = logits.argmax(-1)
        count = len(batch)
        correct = (predicted == batch.targets).sum().item()
        return StepResult(loss, count, {"loss": loss.item() * count, "accuracy": float(correct)})

    # ------------------------------------------------------------ inference
    def predict(self, model: nn.Module, texts: list[str], device: torch.device) -> list[Prediction]:
        """The most likely label of each text, with its probability."""
        meta = self.meta
        vocab = Vocab(meta.vocab)
        cut = meta.max_len
        ids = [torch.tensor(vocab.encode(tokenize(t))[-cut if cut else 0 :] or [vocab.unk_index]) for t in texts]
        lengths = torch.tensor([len(x) for x in ids])
        tokens = nn.utils.rnn.pad_sequence(ids, batch_first=True)
        model.eval()
        with torch.no_grad():
            logits = model(tokens.to(device), lengths.to(device)).float().cpu()
        if logits.dim() == 1:
            positive = torch.sigmoid(logits)
            return [
                Prediction(meta.labels[1], p.item()) if p >= 0.5 else Prediction(meta.labels[0], 1 - p.item())
                for p in positive
            ]
        probs = torch.softmax(logits, -1)
        best = probs.argmax(-1)
        return [Prediction(meta.labels[i], probs[row, i].item()) for row, i in enumerate(best.tolist())]
