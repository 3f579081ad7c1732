"""Stratified K-fold cross-validation (`fit --folds K`): one ordinary run per fold, then mean and standard deviation.

The sentence-classification literature reports sets without an official test
split (Pang & Lee's, say) this way: each fold is the test set once, the others
train (with the usual validation share held out of them).
"""

from __future__ import annotations

import copy
import json
import statistics
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from seqtrain.config import Config
from seqtrain.tasks import make_task
from seqtrain.training.progress import metrics_table
from seqtrain.training.result import Run
from seqtrain.training.trainer import Trainer


def cross_validate(config: Config, console: Console | None) -> tuple[dict[str, dict[str, float]], list[Run]]:
    """Run every fold of `config.data.folds`; returns the summary rows (mean, std, each fold) and the runs."""
    results = []
    for fold in range(config.data.folds):
        run = copy.deepcopy(config)
        run.data.fold = fold
        if console:
            console.print(f"[bold]fold {fold + 1:d} of {config.data.folds:d}[/]")
        result = Trainer(make_task(run), console).fit()
        results.append(result)
        if result.interrupted:
            break
    rows = summary_rows([r.test for r in results])
    summary = {"folds": config.data.folds, "runs": [str(r.run_dir) for r in results], "test": rows}
    path = Path(config.train.logdir) / f"{results[0].run_dir.name}-folds.json"
    path.write_text(json.dumps(summary, indent=2) + "\n")
    if console:
        console.print(metrics_table(escape(f"{config.task}: {len(results)}-fold cross-validation (test folds)"), rows))
        console.print(f"summary: {escape(str(path))}")
    return rows, results


def summary_rows(tests: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and (sample) standard deviation of each test metric over the folds, then each fold's scores."""
    names = sorted(set.intersection(*(set(t) for t in tests))) if tests else []
    mean = {k: statistics.fmean(t[k] for t in tests) for k in names}
    std = {k: statistics.stdev(t[k] for t in tests) if len(tests) > 1 else 0.0 for k in names}
    return {"mean": mean, "std": std, **{f"fold {i}": t for i, t in enumerate(tests)}}
