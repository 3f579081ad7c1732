"""What a finished training run gives back: its folder and its scores (no torch, so the Python API can name it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Run:
    """A training run `fit` finished (or Ctrl-C stopped): where it is and how it scored.

    Attributes:
        run_dir: the run folder: config.toml, best.pt, last.pt, metrics.json and the TensorBoard events.
        task: the task's name.
        test: the best checkpoint's test metrics ({} when the task has no test split, or the run was interrupted).
        best_val: the validation metrics of the best epoch (the one best.pt holds).
        epochs: epochs completed.
        interrupted: True when Ctrl-C stopped the run; `fit(resume=run.run_dir)` continues it.
        wall_time: seconds of training over all of the run's sessions.
        extra: the task's reference rows by split, e.g. `{"test": {"naive": {"mse": ...}}}` (baselines,
            per-class scores), as metrics.json's `extra`.
        warnings: one line per baseline that beats the model.
    """

    run_dir: Path
    task: str
    test: dict[str, float]
    best_val: dict[str, float]
    epochs: int
    interrupted: bool
    wall_time: float
    extra: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def best_checkpoint(self) -> Path:
        """The checkpoint of the best validation epoch: what `seqtrain.load(run.run_dir)` and `seqtrain evaluate` use."""
        return self.run_dir / "best.pt"

    @property
    def last_checkpoint(self) -> Path:
        """The newest checkpoint: what `fit(resume=run.run_dir)` continues from."""
        return self.run_dir / "last.pt"
