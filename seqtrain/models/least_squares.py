"""Least squares with a bias, accumulated batch by batch: the linear forecast (a baseline row, a highway's start)."""

from __future__ import annotations

from collections.abc import Iterable

import torch


def with_bias(inputs: torch.Tensor) -> torch.Tensor:
    """[N, ...] inputs flattened to [N, D + 1] float64 rows ending in a 1."""
    flat = inputs.flatten(1).double()
    return torch.cat([flat, torch.ones(len(flat), 1, dtype=torch.float64)], 1)


def least_squares(pairs: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Weights [D + 1, K] (the bias last) minimising the squared error of inputs [N, ...] onto goals [N, K].

    Accumulates the normal equations in float64, so long records need not sit in memory whole; a tiny ridge
    only keeps a singular system solvable.
    """
    gram = moment = None
    for inputs, goals in pairs:
        a = with_bias(inputs)
        if gram is None:
            gram = torch.zeros(a.shape[1], a.shape[1], dtype=torch.float64)
            moment = torch.zeros(a.shape[1], goals.shape[1], dtype=torch.float64)
        gram += a.T @ a
        moment += a.T @ goals.double()
    ridge = 1e-8 * gram.diagonal().mean() * torch.eye(len(gram), dtype=torch.float64)
    return torch.linalg.solve(gram + ridge, moment)
