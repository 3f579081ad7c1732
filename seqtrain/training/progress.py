"""Live progress (rich) for the trainer; silent when no console is given."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table


def epoch_progress(console: Console | None) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[stats]}"),
        console=console,
        disable=console is None,
        transient=False,
    )


def format_stats(metrics: dict[str, float], rate: float | None = None, unit: str = "ex") -> str:
    parts = [f"{key} {value:.4f}" for key, value in metrics.items()]
    if rate is not None:
        parts.append(f"{rate:,.0f} {unit}/s")
    return "  ".join(parts)


def metrics_table(title: str, rows: dict[str, dict[str, float]]) -> Table:
    """One row per split (train/val/test/...), one column per metric."""
    columns = sorted({key for values in rows.values() for key in values})
    table = Table(title=title)
    table.add_column("split")
    for column in columns:
        table.add_column(column, justify="right")
    for split, values in rows.items():
        table.add_row(split, *(f"{values[c]:.4f}" if c in values else "" for c in columns))
    return table
