"""The baselines numeric sequences are compared against: 1-nearest-neighbour, with the majority class (classes)
or the training mean and ridge regression (numbers).

1-NN uses the Euclidean distance, and dynamic time warping (DTW) with a
Sakoe-Chiba band of `window` (a fraction of the length), the UCR archive's
reference classifiers. Sequences of unequal length are first resampled
linearly to the median training length, so both distances apply. DTW runs
over the band's anti-diagonals, vectorised over all (query, reference) pairs
at once: its cost is pairs x steps x band cells, and it is skipped, with the
reason, above `DTW_BUDGET` cell updates.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch

from seqtrain.models.ridge import fit_ridge
from seqtrain.scores import regression_scores, regression_sums
from seqtrain.sums import floats

DTW_BUDGET = 2e9  # cell updates x channels: under a minute on one idle CPU thread
CHUNK_CELLS = 2**22  # elements per wavefront tensor, to bound memory


def resample(values: np.ndarray, steps: int) -> np.ndarray:
    """[T, C] linearly resampled to [steps, C]."""
    if len(values) == steps:
        return values
    source = np.linspace(0, 1, len(values)) if len(values) > 1 else np.zeros(1)
    target = np.linspace(0, 1, steps)
    return np.stack([np.interp(target, source, values[:, c]) for c in range(values.shape[1])], 1).astype(np.float32)


def stack_equal(sequences: Sequence[np.ndarray], steps: int) -> torch.Tensor:
    """[N, steps, C], each sequence resampled to `steps` where its length differs."""
    return torch.from_numpy(np.stack([resample(s, steps) for s in sequences]))


def euclidean_1nn(queries: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """Index of each query's nearest reference by the Euclidean distance over all steps and channels."""
    return torch.cdist(queries.flatten(1).double(), references.flatten(1).double()).argmin(1)


def dtw_distances(queries: torch.Tensor, references: torch.Tensor, band: int) -> torch.Tensor:
    """[Q, R] DTW distances (sum of squared step differences on the best path, |i - j| <= band) of [Q, T, C] and [R, T, C].

    Cell (i, j) lies on anti-diagonal k = i + j; each diagonal needs the two
    before it only. Kept per diagonal as a vector over i, padded by one
    infinite cell each side so the neighbours are shifted slices.
    """
    q_count, steps, _ = queries.shape
    r_count = references.shape[0]
    by_step = references.float().transpose(0, 1)  # [T, R, C]
    rows = max(1, CHUNK_CELLS // max(r_count * steps, 1))
    out = torch.empty(q_count, r_count)
    for start in range(0, q_count, rows):
        q = queries[start : start + rows].float().transpose(0, 1)  # [T, Qc, C]
        pairs = q.shape[1] * r_count
        # three diagonals in turn (k-2, k-1, k), [i + 1, pair]; only the band's cells are ever touched, so a
        # reused one is cleared where it was last written
        diagonals = [torch.full((steps + 2, pairs), float("inf")) for _ in range(3)]
        written: list[slice | None] = [None, None, None]
        for k in range(0, 2 * steps - 1):
            low, high = max(0, k - steps + 1, (k - band + 1) // 2), min(steps - 1, k, (k + band) // 2)
            current, last, before = diagonals[k % 3], diagonals[(k - 1) % 3], diagonals[(k - 2) % 3]
            if written[k % 3] is not None:
                current[written[k % 3]] = float("inf")
            i = torch.arange(low, high + 1)
            cost = (q[i][:, :, None] - by_step[k - i][:, None]).pow(2).sum(-1).view(len(i), pairs)
            if k:
                up = last[low : high + 1]  # (i-1, j): diagonal k-1 at i-1, stored at i
                left = last[low + 1 : high + 2]  # (i, j-1): diagonal k-1 at i
                corner = before[low : high + 1]  # (i-1, j-1): diagonal k-2 at i-1
                cost = cost + torch.minimum(torch.minimum(up, left), corner)
            written[k % 3] = slice(low + 1, high + 2)
            current[written[k % 3]] = cost
        out[start : start + rows] = diagonals[(2 * steps - 2) % 3][steps].view(-1, r_count)
    return out


def dtw_cost(queries: int, references: int, steps: int, band: int, channels: int) -> float:
    """Cell updates of `dtw_distances` times the channels each one compares, for the budget."""
    return float(queries) * references * steps * min(band + 1, steps) * channels


def equal_lengths(
    train: list[np.ndarray], splits: dict[str, list[np.ndarray]]
) -> tuple[torch.Tensor, dict[str, torch.Tensor], str]:
    """The training sequences and each split's, resampled to the median training length ([N, steps, C] each),
    and a phrase saying whether that was needed."""
    steps = int(np.median([len(s) for s in train]))
    equal = "equal lengths" if len({len(s) for s in train}) == 1 else f"lengths resampled to {steps} steps"
    return stack_equal(train, steps), {name: stack_equal(seqs, steps) for name, seqs in splits.items() if seqs}, equal


def nearest_neighbours(
    references: torch.Tensor, queries: dict[str, torch.Tensor], window: float
) -> tuple[dict[str, dict[str, torch.Tensor]], str]:
    """Per split, the index of each query's nearest reference by name ('1nn-euclidean', '1nn-dtw-w<window>'
    where the budget allows DTW), and a phrase saying what each cost or why DTW was skipped."""
    count, steps, channels = references.shape
    band = max(1, round(window * steps))
    total = sum(dtw_cost(len(q), count, steps, band, channels) for q in queries.values())
    run_dtw = window > 0 and total <= DTW_BUDGET
    found: dict[str, dict[str, torch.Tensor]] = {}
    spent = {"euclidean": 0.0, "dtw": 0.0}
    for split, query in queries.items():
        begin = time.perf_counter()
        found[split] = {"1nn-euclidean": euclidean_1nn(query, references)}
        spent["euclidean"] += time.perf_counter() - begin
        if run_dtw:
            begin = time.perf_counter()
            found[split][f"1nn-dtw-w{window:g}"] = dtw_distances(query, references, band).argmin(1)
            spent["dtw"] += time.perf_counter() - begin
    said = f"Euclidean {spent['euclidean']:.2f} s"
    if run_dtw:
        said += f", DTW (Sakoe-Chiba band {band} steps = {window:g} of {steps}) {spent['dtw']:.1f} s"
    elif window > 0:
        said += (f"; DTW skipped: {total:.2g} cell updates x channels exceed the budget of {DTW_BUDGET:.0g} "
                 "(a smaller --dtw-window or --max-len makes it affordable)")
    return found, said


def one_nn_baselines(
    train: list[np.ndarray], train_labels: torch.Tensor, splits: dict[str, tuple[list[np.ndarray], torch.Tensor]],
    classes: int, window: float,
) -> tuple[dict[str, dict[str, dict[str, float]]], list[str]]:
    """Accuracy of the majority class, 1-NN Euclidean and 1-NN DTW on each split, and lines saying what each cost."""
    majority = int(torch.bincount(train_labels, minlength=classes).argmax())
    references, queries, equal = equal_lengths(train, {name: seqs for name, (seqs, _) in splits.items()})
    found, said = nearest_neighbours(references, queries, window)
    rows: dict[str, dict[str, dict[str, float]]] = {}
    for split, nearest in found.items():
        targets = splits[split][1]
        rows[split] = {"majority": {"accuracy": float((targets == majority).double().mean())}}
        for name, index in nearest.items():
            rows[split][name] = {"accuracy": float((train_labels[index] == targets).double().mean())}
    return rows, [f"1-NN baselines on {equal}: {said}"]


def regression_baselines(
    train: list[np.ndarray], train_targets: torch.Tensor, splits: dict[str, tuple[list[np.ndarray], torch.Tensor]],
    window: float, mean: float, std: float,
) -> tuple[dict[str, dict[str, dict[str, float]]], list[str]]:
    """RMSE, MAE and R^2 on each split of the training mean, 1-NN (the nearest training sequence's target;
    Euclidean and DTW) and ridge regression on the flattened equal-length sequences; and lines on their cost."""
    references, queries, equal = equal_lengths(train, {name: seqs for name, (seqs, _) in splits.items()})
    found, said = nearest_neighbours(references, queries, window)
    ridge, ridge_said = fit_ridge(references.flatten(1), train_targets)
    rows: dict[str, dict[str, dict[str, float]]] = {}
    for split, nearest in found.items():
        truth = splits[split][1].double()
        guesses = {"mean": torch.full_like(truth, mean), **{name: train_targets[i].double() for name, i in nearest.items()}}
        if ridge is not None:
            guesses["ridge"] = ridge(queries[split].flatten(1))
        rows[split] = {
            name: regression_scores(floats(regression_sums(guess, truth, mean, std)), len(truth), std)
            for name, guess in guesses.items()
        }
    return rows, [f"baselines on {equal}: 1-NN {said}; {ridge_said}"]
