"""Reversible target transforms for forecasting: log, differencing and per-window scaling.

A trended series whose test values exceed anything seen in training pushes a
recurrent model's inputs and outputs outside the range it learnt; its gates
saturate and it loses to a straight line. Transformed, the model sees shapes
rather than levels: log turns growth that multiplies into growth that adds,
differencing turns a trend into a level, and per-window scaling centres and
scales each window by its own mean and spread. The transforms live in the model
and are inverted on its output, so the forecast, the loss, the metrics and the
baselines all stay in the target's own units (the task's global normalisation).
"""

from __future__ import annotations

import torch
from torch import nn

from seqtrain.errors import SeqtrainError

TRANSFORMS = ("log", "diff", "scale")
TINY = 1e-6


def parse_transforms(text: str | None) -> list[str]:
    """`--transform` as a list, in the order applied: a subset of log, diff, scale joined by ',' or '+' (as a
    `seqtrain tune` choice writes it)."""
    names = [t.strip() for t in (text or "").replace("+", ",").split(",") if t.strip() and t.strip() != "none"]
    for name in names:
        if name not in TRANSFORMS:
            raise SeqtrainError(
                f"--transform: unknown '{name}'; give none, or some of log, diff, scale in that order (e.g. log,diff,scale)"
            )
    if len(set(names)) != len(names) or names != [t for t in TRANSFORMS if t in names]:
        raise SeqtrainError(f"--transform {text}: give each of log, diff, scale at most once, in that order")
    return names


class TargetTransform(nn.Module):
    """Maps the normalised target column [B, T] to the model's units and a forecast back.

    `mean`/`std` undo the task's normalisation (to raw values for log);
    `shift`/`spread` standardise the transformed series with training statistics
    when no per-window scaling is asked for.
    """

    def __init__(self, names: list[str], mean: float, std: float, shift: float = 0.0, spread: float = 1.0):
        super().__init__()
        self.names = list(names)
        for name, value in (("mean", mean), ("std", std), ("shift", shift), ("spread", spread)):
            self.register_buffer(name, torch.tensor(float(value)))

    def levels(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw target values in the space where differences are taken (log, or as they are)."""
        return torch.log(raw.clamp(min=TINY)) if "log" in self.names else raw

    def encode(self, z: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(transformed series [B, T], context for `decode`): the context holds each step's level and the scaling."""
        v = self.levels(z * self.std + self.mean)
        anchor = v
        if "diff" in self.names:
            v = torch.cat([torch.zeros_like(v[:, :1]), v.diff(dim=1)], 1)
        if "scale" in self.names:
            loc = v.mean(1, keepdim=True)
            spread = v.std(1, keepdim=True, unbiased=False).clamp(min=TINY) if v.shape[1] > 1 else torch.ones_like(loc)
        else:
            loc, spread = self.shift.expand(len(v), 1), self.spread.expand(len(v), 1)
        return (v - loc) / spread, (anchor, loc, spread)

    def decode(self, out: torch.Tensor, context: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """A forecast in the model's units ([B, H] from the last step, or [B, T, H] from every step) back in the
        task's normalised units."""
        anchor, loc, spread = context
        if out.dim() == 3:
            anchor, loc, spread = anchor.unsqueeze(-1), loc.unsqueeze(-1), spread.unsqueeze(-1)
        else:
            anchor = anchor[:, -1:]
        v = out * spread + loc
        if "diff" in self.names:
            v = anchor + v.cumsum(-1)
        raw = torch.exp(v) if "log" in self.names else v
        return (raw - self.mean) / self.std


def transform_statistics(names: list[str], raw: torch.Tensor) -> tuple[float, float]:
    """Mean and spread of the training target after log and diff, to standardise it without per-window scaling."""
    if not names or "scale" in names:
        return 0.0, 1.0
    probe = TargetTransform([n for n in names if n != "scale"], 0.0, 1.0)
    v = probe.levels(raw.double())
    if "diff" in names:
        v = v.diff()
    spread = float(v.std(unbiased=False)) if len(v) > 1 else 1.0
    return float(v.mean()), spread if spread > 0 else 1.0
