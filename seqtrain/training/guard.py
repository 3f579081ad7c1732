"""The NaN guard's counters and the per-step training curve, kept on the device between reads.

Each step records its loss, gradient norm and whether it was non-finite as
device tensors, and counts bad steps in a row there too, so a step needs no
host sync. The trainer reads everything at once (`pending`, then `settle`)
at each progress refresh, at the end of a pass and before every checkpoint:
the points go to TensorBoard then, and a run that reached `--max-bad-steps`
in a row stops there, naming the step where the limit was reached.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Point:
    """One training step as TensorBoard shows it."""

    step: int
    loss: float
    grad_norm: float
    bad: bool
    skipped: int  # non-finite steps of the run up to this one


@dataclass
class Reading:
    points: list[Point]
    reached: int | None  # the step at which the limit of bad steps in a row was first reached
    lr: float | None  # the learning rate after that step


class StepGuard:
    """A run's bad-step counters (device tensors between reads, ints after) and the steps recorded since the last read."""

    def __init__(self, in_a_row: int = 0, skipped: int = 0):
        self.in_a_row: int | torch.Tensor = in_a_row  # non-finite steps in a row
        self.skipped: int | torch.Tensor = skipped  # non-finite steps over the run
        self.reached: int | torch.Tensor = -1
        self.points: list[tuple[int, torch.Tensor]] = []
        self.lrs: dict[int, float] = {}

    def record(self, step: int, loss: torch.Tensor, grad_norm: torch.Tensor, bad: torch.Tensor, limit: int, lr: float) -> None:
        """Count step `step` (a 0-dim bool `bad`: skipped) on the device; no host sync."""
        bad_count = bad.long()
        self.in_a_row = (self.in_a_row + bad_count) * bad_count  # back to 0 on a good step
        self.skipped = self.skipped + bad_count
        first = (self.in_a_row >= limit) & (self.reached < 0)
        self.reached = torch.where(first, step, self.reached)
        values = (loss.detach().double(), grad_norm.detach().double().to(loss.device), bad.double(), self.skipped.double())
        self.points.append((step, torch.stack(values)))
        self.lrs[step] = lr

    def pending(self) -> list[Any]:
        """What `settle` needs from the device, to fetch with the trainer's other totals in one transfer."""
        return [self.in_a_row, self.skipped, self.reached, *(values for _, values in self.points)]

    def settle(self, fetched: list[Any]) -> Reading:
        """Take the fetched values of `pending` back as numbers; returns the steps recorded since the last call."""
        in_a_row, skipped, reached, *rows = fetched
        self.in_a_row, self.skipped, self.reached = int(in_a_row), int(skipped), -1
        points = [Point(step, loss, norm, bool(bad), int(total)) for (step, _), (loss, norm, bad, total) in zip(self.points, rows)]
        reached = int(reached) if reached >= 0 else None
        lr = self.lrs.get(reached) if reached is not None else None
        self.points, self.lrs = [], {}
        return Reading(points, reached, lr)
