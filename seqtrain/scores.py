"""Classification and regression scores from additive sums, so an epoch's batches (and ranks) sum exactly.

A single-label pass counts a confusion matrix (rows: true class, columns:
predicted); a multi-label pass counts true positives, false positives and
false negatives per label. Both reduce to per-class (tp, fp, fn). A
regression pass sums its errors and the truth's first two moments, in units
of the training targets' spread, from which RMSE, MAE and R^2 follow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class Counts:
    """Per-class counts of one pass; `confusion` only for single-label tasks."""

    tp: torch.Tensor
    fp: torch.Tensor
    fn: torch.Tensor
    confusion: torch.Tensor | None = None

    @classmethod
    def from_confusion(cls, confusion: torch.Tensor) -> Counts:
        tp = confusion.diagonal()
        return cls(tp, confusion.sum(0) - tp, confusion.sum(1) - tp, confusion)

    def per_class(self) -> dict[str, torch.Tensor]:
        """precision, recall, f1 and support per class (0 where undefined, as scikit-learn reports)."""
        tp, fp, fn = self.tp.double(), self.fp.double(), self.fn.double()
        precision = tp / (tp + fp).clamp(min=1)
        recall = tp / (tp + fn).clamp(min=1)
        f1 = 2 * tp / (2 * tp + fp + fn).clamp(min=1)
        return {"precision": precision, "recall": recall, "f1": f1, "support": (self.tp + self.fn).long()}  # a count

    def macro_f1(self) -> float:
        """Mean F1 over the classes that occur in the truth or the predictions of this pass."""
        present = (self.tp + self.fp + self.fn) > 0
        f1 = self.per_class()["f1"]
        return float(f1[present].mean()) if present.any() else 0.0

    def micro_f1(self) -> float:
        tp, fp, fn = (float(x.sum()) for x in (self.tp, self.fp, self.fn))
        return 2 * tp / max(2 * tp + fp + fn, 1)


def count_sums(predicted: torch.Tensor, targets: torch.Tensor, classes: int) -> dict[str, torch.Tensor]:
    """Additive sums of one batch as vectors on its device: `cm` cells at true*C+pred (single-label, [B] ids), or
    `tp`/`fp`/`fn` per class (multi-label, [B, C] 0/1). Read back (seqtrain/sums.py `floats`) they are the
    non-zero entries `cm:<cell>` or `tp:<class>`..., the form `counts_from_sums` takes."""
    if predicted.dim() == 1:
        cells = targets * classes + predicted
        # not bincount: on CUDA it reads the largest id back to size its output, a host sync
        zeros = torch.zeros(classes * classes, dtype=torch.long, device=cells.device)
        return {"cm": zeros.scatter_add_(0, cells, torch.ones_like(cells))}
    p, t = predicted.bool(), targets.bool()
    return {"tp": (p & t).sum(0), "fp": (p & ~t).sum(0), "fn": (~p & t).sum(0)}


def counts_from_sums(sums: dict[str, float], classes: int, multi_label: bool) -> Counts:
    """The counts that `count_sums` spread over keys, gathered back into tensors."""
    if multi_label:
        vectors = {kind: torch.zeros(classes, dtype=torch.long) for kind in ("tp", "fp", "fn")}
        for key, value in sums.items():
            kind, _, index = key.partition(":")
            if kind in vectors:
                vectors[kind][int(index)] = int(value)
        return Counts(vectors["tp"], vectors["fp"], vectors["fn"])
    cells = torch.zeros(classes * classes, dtype=torch.long)
    for key, value in sums.items():
        if key.startswith("cm:"):
            cells[int(key[3:])] = int(value)
    return Counts.from_confusion(cells.view(classes, classes))


def headline_scores(counts: Counts, correct: float, count: int, multi_label: bool) -> dict[str, float]:
    """accuracy (exact match for multi-label), macro-F1, and micro-F1 for multi-label."""
    out = {"accuracy": correct / max(count, 1), "macro_f1": counts.macro_f1()}
    if multi_label:
        out["micro_f1"] = counts.micro_f1()
    return out


def regression_sums(predicted: torch.Tensor, truth: torch.Tensor, mean: float, std: float) -> dict[str, torch.Tensor]:
    """Squared and absolute errors, and the sum and squared sum of the truth, all in units of `std` about `mean`
    (the training targets'): centred sums keep R^2's spread exact in float32 whatever the target's level."""
    error = (predicted.detach().double() - truth.double()) / std
    centred = (truth.double() - mean) / std
    return {"squared": error.pow(2).sum(), "absolute": error.abs().sum(), "truth": centred.sum(), "truth2": centred.pow(2).sum()}


def regression_scores(sums: dict[str, float], count: int, std: float) -> dict[str, float]:
    """RMSE and MAE in the target's units, and R^2 = 1 - SSE / the split's own spread about its mean (NaN where
    the split's targets are all equal)."""
    n = max(count, 1)
    spread = sums.get("truth2", 0.0) - sums.get("truth", 0.0) ** 2 / n
    squared = sums.get("squared", 0.0)
    return {
        "rmse": std * math.sqrt(squared / n),
        "mae": std * sums.get("absolute", 0.0) / n,
        "r2": 1 - squared / spread if spread > 1e-12 else math.nan,
    }
