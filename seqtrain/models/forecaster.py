"""Forecasting over real values: a recurrent stack, then a linear head to the next `horizon` values."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from seqtrain.config import ForecastModel
from seqtrain.models.least_squares import least_squares
from seqtrain.models.recurrent import rnn_from_settings
from seqtrain.models.target_transform import TargetTransform


def last_step(forecast: torch.Tensor) -> torch.Tensor:
    """The forecast made at the last input step, [B, horizon], from either output shape (every step: [B, T, horizon])."""
    return forecast[:, -1] if forecast.dim() == 3 else forecast


class Forecaster(nn.Module):
    """Sequence -> vector (head on the last state, [B, horizon]) or, with `every_step`, sequence -> sequence
    (head on every step's state, [B, T, horizon]: step t forecasts the `horizon` values after t).

    With `residual`, the head's output is added to the last observed target
    value (feature 0), so an untrained model starts as the naive forecast
    and learns only the change. It works in normalised units; the `target_std` buffer turns its errors
    back into the target's own units, and travels with the weights. With a `transform`, the target column
    is transformed before the recurrent stack and the forecast inverted after the head (residual included).

    With `highway`, a linear autoregression on the target's last `window` values, in the task's normalised
    units (untransformed), is added to the forecast, as LSTNet (Lai et al. 2018) adds one because a
    recurrent net's output is insensitive to the scale of its input. The model then contains the linear
    forecast of the target's own past, whatever the transform, and the recurrent path learns what it misses.
    It starts at zero (so a residual model still starts as the naive forecast); training starts it at the
    least-squares fit instead (`start_highway`), so the model begins as the linear forecast and improves on it.
    """

    def __init__(
        self, n_features: int, horizon: int, window: int, cfg: ForecastModel, target_std: float = 1.0,
        transform: TargetTransform | None = None,
    ):
        super().__init__()
        self.transform = transform  # log / diff / per-window scaling of the target, inverted on the output
        self.every_step, self.residual, self.window, self.n_features = cfg.every_step, cfg.residual, window, n_features
        self.rnn = rnn_from_settings(cfg, n_features, cfg.dropout)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.hidden, horizon)
        self.highway = nn.Linear(window, horizon) if cfg.highway else None
        if self.highway is not None:
            nn.init.zeros_(self.highway.weight)
            nn.init.zeros_(self.highway.bias)
        self.register_buffer("target_std", torch.tensor(float(target_std)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        linear = 0.0 if self.highway is None else self.highway(self.lags(x[..., 0]))
        context = None
        if self.transform is not None:
            target, context = self.transform.encode(x[..., 0])
            x = torch.cat([target.unsqueeze(-1).to(x.dtype), x[..., 1:]], -1)
        outputs, _ = self.rnn(x)
        level = x[..., :1]  # the target's value at each step
        if not self.every_step:
            outputs, level = outputs[:, -1], level[:, -1]
        forecast = self.head(self.dropout(outputs))
        forecast = forecast + level if self.residual else forecast
        return (forecast if context is None else self.transform.decode(forecast, context)) + linear

    @torch.no_grad()
    def start_highway(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Fit the highway by least squares to what the rest of the model, with its head at zero, leaves of the
        next values y [B, horizon] of windows x [B, window, F]: the model then starts as that linear forecast."""
        for layer in (self.head, self.highway):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        was_training = self.training
        self.eval()
        pairs = ((x[:, -self.window :, 0], y - last_step(self(x))) for x, y in batches)
        weights = least_squares(pairs)
        self.train(was_training)
        self.highway.weight.copy_(weights[:-1].T)
        self.highway.bias.copy_(weights[-1])

    def lags(self, target: torch.Tensor) -> torch.Tensor:
        """The highway's input: the last `window` target values [B, window], or with `every_step` those up to each
        step [B, T, window] (zeros before the first)."""
        if not self.every_step:
            return target[:, -self.window :]
        return nn.functional.pad(target, (self.window - 1, 0)).unfold(1, self.window, 1)

    def example_input(self, batch: int = 2) -> tuple[torch.Tensor]:
        return (torch.zeros(batch, self.window, self.n_features),)
