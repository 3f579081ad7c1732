"""TensorBoard output for one run, all in the run's own folder (hparams included)."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

# TensorBoard's writer reaches its file API through tensorboard.compat.tf, which imports TensorFlow where it is
# installed: seconds of start-up and half a dozen lines of TensorFlow's logging on stderr before seqtrain's own
# output. The marker module tensorboard.compat.notf (TensorBoard's own switch) makes it use its built-in stub,
# which writes the same event files.
sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))

from torch.utils.tensorboard import SummaryWriter  # noqa: E402  (after the switch above)
from torch.utils.tensorboard.summary import hparams  # noqa: E402


class RunLogger:
    def __init__(self, run_dir: Path, purge_step: int | None = None):
        # purge_step drops events past a resumed run's checkpoint, so curves do not double back.
        self.writer = SummaryWriter(str(run_dir), purge_step=purge_step)

    def scalar(self, tag: str, value: float, step: int) -> None:
        self.writer.add_scalar(tag, value, step)

    def scalars(self, prefix: str, values: dict[str, float], step: int) -> None:
        for key, value in values.items():
            self.writer.add_scalar(f"{prefix}/{key}", value, step)

    def text(self, tag: str, text: str, step: int = 0) -> None:
        self.writer.add_text(tag, text, step)

    def embedding(self, tag: str, matrix, labels: list[str], step: int) -> None:
        """Vectors for the Projector tab: `<step>/<tag>/tensors.tsv`, `metadata.tsv` (one label a row) and
        an entry in the run's `projector_config.pbtxt`."""
        self.writer.add_embedding(matrix, metadata=labels, tag=tag, global_step=step)

    def figure(self, tag: str, figure, step: int) -> None:
        self.writer.add_figure(tag, figure, step)

    def hparams(self, params: dict[str, Any], metrics: dict[str, float]) -> None:
        """Write this run's hparams (a session) into its own event file, and its metrics as hparams/* scalars.

        SummaryWriter.add_hparams would open a new sub-folder, which shows as
        a second run in TensorBoard; writing the summaries here keeps one run
        as one run. No experiment summary is written: TensorBoard takes the
        first one it finds as every run's schema, so with runs of several tasks
        in one logdir the others lost their settings and metrics. Without one
        it builds the table from all runs' sessions: every setting and metric
        of every run.
        """
        clean = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in params.items()}
        metric_tags = {f"hparams/{k}": v for k, v in metrics.items()}
        _, session_start, session_end = hparams(clean, metric_tags)
        file_writer = self.writer._get_file_writer()
        for summary in (session_start, session_end):
            file_writer.add_summary(summary)
        for tag, value in metric_tags.items():
            self.writer.add_scalar(tag, value)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
