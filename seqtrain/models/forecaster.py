"""Forecasting over real values: a recurrent stack, then a linear head to the next `horizon` values."""

from __future__ import annotations

import torch
from torch import nn

from seqtrain.config import ForecastModel
from seqtrain.models.recurrent import rnn_from_settings
from seqtrain.models.target_transform import TargetTransform


class Forecaster(nn.Module):
    """Sequence -> vector (head on the last state, [B, horizon]) or, with `every_step`, sequence -> sequence
    (head on every step's state, [B, T, horizon]: step t forecasts the `horizon` values after t).

    With `residual`, the head's output is added to the last observed target
    value (feature 0), so an untrained model starts as the naive forecast
    and learns only the change. It works in normalised units; the `target_std` buffer turns its errors
    back into the target's own units, and travels with the weights. With a `transform`, the target column
    is transformed before the recurrent stack and the forecast inverted after the head (residual included).
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
        self.register_buffer("target_std", torch.tensor(float(target_std)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
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
        return forecast if context is None else self.transform.decode(forecast, context)

    def example_input(self, batch: int = 2) -> tuple[torch.Tensor]:
        return (torch.zeros(batch, self.window, self.n_features),)
