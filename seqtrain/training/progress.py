"""Live progress (rich) for the trainer; silent when no console is given."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Column, Table


def epoch_progress(console: Console | None) -> Progress:
    """title, bar, done/total, elapsed, remaining, stats. The bar gives up width first and the stats wrap, so
    at 80 columns no count or time is cut."""
    width = console.width if console is not None else 80
    return Progress(
        TextColumn("[bold]{task.description}", table_column=Column(no_wrap=True)),
        BarColumn(bar_width=max(10, min(40, width - 90))),
        MofNCompleteColumn(table_column=Column(no_wrap=True)),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[stats]}", table_column=Column(overflow="fold")),
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
    """One row per split (train/val/test/...), one column per metric; headers wrap rather than being cut."""
    columns = sorted({key for values in rows.values() for key in values})
    table = Table(title=title)
    table.add_column("split", overflow="fold")
    for column in columns:
        table.add_column(column, justify="right", overflow="fold")
    for split, values in rows.items():
        table.add_row(escape(split), *(metric_text(values[c]) if c in values else "" for c in columns))
    return table


def metrics_tables(title: str, rows: dict[str, dict[str, float]], own: list[str]) -> list[Table]:
    """The rows that share a metric with the task's `own` in one table, the others (per-class scores) in a
    second: one table of every metric would be too wide to read."""
    first = {name: values for name, values in rows.items() if set(values) & set(own) or not values}
    others = {name: values for name, values in rows.items() if name not in first}
    return [metrics_table(title, first)] + ([metrics_table(f"{title}, more", others)] if others else [])


def metric_text(value: float | int) -> str:
    """A count (support) as an integer, a score with four decimals."""
    return f"{value:,}" if isinstance(value, int) else f"{value:.4f}"
