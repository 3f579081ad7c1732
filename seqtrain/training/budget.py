"""A training budget in optimizer steps rather than epochs, so small data sets get enough steps."""

from __future__ import annotations

import math

MAX_EPOCHS = 100  # the step budget's ceiling on epochs, for a training split of a few dozen texts
PATIENCE_STEPS = 150  # the patience it sets, in optimizer steps


def step_budget(config, n_train: int, has_val: bool, unit: str = "texts") -> str | None:
    """Raise --epochs so a small training split still gets --min-steps optimizer steps, with a patience of about
    PATIENCE_STEPS steps (the best validation epoch is what is kept and tested); a line saying so, or None.

    A budget in epochs, tuned on 22,500 reviews (350 steps an epoch), gives a 400-text set 18 steps, and a
    ten-year monthly CSV 30: too few to leave chance or the naive forecast.
    The rule is idempotent, so a resumed or re-run config lands on the same numbers.
    """
    train, data = config.train, config.data
    steps_per_epoch = max(math.ceil(n_train / train.batch_size), 1)
    if train.max_steps:  # a quick trial runs what it asks for
        return None
    wanted = min(math.ceil(getattr(data, "min_steps", 0) / steps_per_epoch), MAX_EPOCHS)
    if wanted <= train.epochs:
        return None
    before = train.epochs
    train.epochs = wanted
    if has_val:
        train.patience = max(train.patience, math.ceil(PATIENCE_STEPS / steps_per_epoch))
    return (f"training budget: {n_train:,} training {unit} make {steps_per_epoch} steps an epoch, so {wanted} epochs "
            f"(not {before}) reach --min-steps {data.min_steps}, patience {train.patience}; --min-steps 0 keeps --epochs")


def keep_typed_epochs(config, overrides: dict) -> None:
    """Typed --epochs means exactly that many: the step budget steps aside unless --min-steps is typed too."""
    if "epochs" in overrides and "min_steps" not in overrides and hasattr(config.data, "min_steps"):
        config.data.min_steps = 0
