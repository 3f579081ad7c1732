"""What every text-classification task shares: model, loss, metrics and prediction."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from seqtrain.config import Config
from seqtrain.data.batching import Batch
from seqtrain.data.text import Vocab, tokenize
from seqtrain.data.vectors import embedding_matrix, resolve_vectors
from seqtrain.models.classifier import SequenceClassifier
from seqtrain.tasks.base import StepContext, StepResult, Task


class TextClassificationTask(Task):
    """Subclasses load data into `meta = {"vocab": [...], "labels": [...]}` and loaders of `Batch`."""

    monitor = "accuracy"
    monitor_mode = "max"
    headline = "accuracy"

    def build_model(self, config: Config, meta: dict[str, Any]) -> nn.Module:
        model = SequenceClassifier(len(meta["vocab"]), len(meta["labels"]), config.model)
        if config.model.embeddings and "embedding_coverage" not in meta:
            # Only for a fresh model: a checkpoint's weights already hold the vectors.
            vectors = resolve_vectors(config.model.embeddings, config.data.cache_dir, config.data.mirror)
            if vectors.dim != config.model.embed_dim:
                config.model.embed_dim = vectors.dim
                model = SequenceClassifier(len(meta["vocab"]), len(meta["labels"]), config.model)
            matrix, coverage = embedding_matrix(vectors, Vocab(meta["vocab"]), config.train.seed)
            model.embedding.weight.data.copy_(matrix)
            meta["embedding_coverage"] = coverage
        model.embedding.weight.requires_grad_(not config.model.freeze_embeddings)
        return model

    def default_meta(self, config: Config) -> dict[str, Any]:
        return {"vocab": ["<pad>", "<unk>"] + [f"w{i}" for i in range(config.data.max_vocab - 2)], "labels": ["neg", "pos"]}

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

    def predict(self, model: nn.Module, meta: dict[str, Any], texts: list[str], device: torch.device) -> list[tuple[str, float]]:
        """(label, probability of that label) for each text."""
        vocab = Vocab(meta["vocab"])
        max_len = meta.get("max_len") or None
        ids = [torch.tensor(vocab.encode(tokenize(t))[-max_len if max_len else 0 :] or [vocab.unk_index]) for t in texts]
        lengths = torch.tensor([len(x) for x in ids])
        tokens = nn.utils.rnn.pad_sequence(ids, batch_first=True)
        model.eval()
        with torch.no_grad():
            logits = model(tokens.to(device), lengths.to(device)).float().cpu()
        if logits.dim() == 1:
            positive = torch.sigmoid(logits)
            return [
                (meta["labels"][1], p.item()) if p >= 0.5 else (meta["labels"][0], 1 - p.item()) for p in positive
            ]
        probs = torch.softmax(logits, -1)
        best = probs.argmax(-1)
        return [(meta["labels"][i], probs[row, i].item()) for row, i in enumerate(best.tolist())]
