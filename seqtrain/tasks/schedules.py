"""Scheduled values: numbers that change with the global step (e.g. a teacher-forcing ratio).

A task returns them in `TaskData.schedules`; the trainer evaluates, logs and
hands them to the task's step. Nothing here knows what the number means.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from seqtrain.errors import SeqtrainError

KINDS = ("constant", "linear", "inverse-sigmoid")


def inverse_sigmoid_k(total_steps: int) -> float:
    """The k of k / (k + exp(step / k)) that reaches the midpoint 0.5 at half the run (k ln k = total / 2)."""
    target = max(total_steps / 2, 1.0)
    low, high = 1.0, max(target, 2.0)
    for _ in range(100):  # bisection: k ln k is increasing for k >= 1
        middle = (low + high) / 2
        low, high = (middle, high) if middle * math.log(middle) < target else (low, middle)
    return (low + high) / 2


def decay_schedule(kind: str, final: float, total_steps: int) -> Callable[[int], float]:
    """`final` throughout (constant), or from 1.0 down to `final` over `total_steps`.

    linear: straight line, reaching `final` at the last step.
    inverse-sigmoid: 1.0 -> `final` along k / (k + exp(step / k)) (Bengio et
    al. 2015, scheduled sampling), with k chosen so the decay is halfway at
    half the run.
    """
    if not 0.0 <= final <= 1.0:
        raise SeqtrainError(f"--teacher-forcing must be in [0, 1], not {final}")
    if kind == "constant":
        return lambda step: final
    span = 1.0 - final
    if kind == "linear":
        last = max(total_steps - 1, 1)
        return lambda step: 1.0 - span * min(step, last) / last
    if kind == "inverse-sigmoid":
        k = inverse_sigmoid_k(total_steps)
        return lambda step: final + span * k / (k + math.exp(min(step / k, 700.0)))
    raise SeqtrainError(f"--tf-schedule must be one of {', '.join(KINDS)}, not '{kind}'")
