"""Ridge regression with its penalty chosen by exact leave-one-out error: the linear baseline for regression on
flattened equal-length sequences.

One SVD of the centred inputs gives every penalty's fit and its leave-one-out
residuals in closed form (r_i / (1 - h_ii), h the hat matrix plus 1/n for the
unpenalised intercept), so choosing among `ALPHAS` costs no refitting. The
SVD costs about n x p x min(n, p) operations; above `RIDGE_BUDGET` the
baseline is skipped with the reason.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

ALPHAS = torch.logspace(-3, 5, 17, dtype=torch.float64)
RIDGE_BUDGET = 1e11  # n x p x min(n, p): about a minute on one CPU thread


def fit_ridge(x: torch.Tensor, y: torch.Tensor) -> tuple[Callable[[torch.Tensor], torch.Tensor] | None, str]:
    """A predictor [N, p] -> [N] (float64) fitted on `x` [n, p] and `y` [n], and a phrase naming the chosen
    penalty; (None, why) where the fit is over the budget."""
    n, p = x.shape
    cost = float(n) * p * min(n, p)
    if cost > RIDGE_BUDGET:
        return None, f"ridge skipped: {cost:.2g} operations exceed the budget of {RIDGE_BUDGET:.0g} (a smaller --max-len makes it affordable)"
    x, y = x.double(), y.double()
    x_mean, y_mean = x.mean(0), y.mean()
    u, s, vh = torch.linalg.svd(x - x_mean, full_matrices=False)
    uty = u.T @ (y - y_mean)
    shrink = s.pow(2)[None] / (s.pow(2)[None] + ALPHAS[:, None])  # [alphas, k]
    fitted = (shrink * uty) @ u.T  # [alphas, n]: each penalty's fit of the centred targets
    leverage = shrink @ u.T.pow(2) + 1 / n
    loo = ((y - y_mean - fitted) / (1 - leverage).clamp(min=1e-12)).pow(2).mean(1)
    best = int(loo.argmin())
    weights = vh.T @ (s / (s.pow(2) + ALPHAS[best]) * uty)

    def predict(rows: torch.Tensor) -> torch.Tensor:
        return (rows.double() - x_mean) @ weights + y_mean

    return predict, f"ridge penalty {ALPHAS[best].item():g} by leave-one-out error (of {len(ALPHAS)} from 1e-3 to 1e5)"
