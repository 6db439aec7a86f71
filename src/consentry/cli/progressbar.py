"""The rich progress bar itself, imported only when stderr is a terminal (see progress.py)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

__all__ = ["BarTicker", "new_bar"]


class _RateColumn(ProgressColumn):
    """Items per second; a dash until rich has two samples to estimate it from (a format
    string such as ``{task.speed:.1f}`` fails on the first frame, where speed is None)."""

    def render(self, task: Task) -> Text:
        speed = task.speed
        return Text("-/s" if speed is None else f"{speed:,.1f}/s", style="progress.data.speed")


class BarTicker:
    def __init__(self, bar: Progress, task: TaskID) -> None:
        self._bar, self._task = bar, task

    def advance(self, n: int = 1) -> None:
        self._bar.advance(self._task, n)


def new_bar(total: int | None) -> Progress:
    """Spinner, label, bar, done/total, items/s, elapsed, ETA (the last three need a total)."""
    columns: list[ProgressColumn] = [SpinnerColumn(), TextColumn("[bold]{task.description}")]
    if total is not None:
        columns += [BarColumn(), MofNCompleteColumn(), _RateColumn()]
    else:
        columns += [TextColumn("{task.completed:,}"), _RateColumn()]
    columns += [TimeElapsedColumn()]
    if total is not None:
        columns += [TimeRemainingColumn()]
    return Progress(*columns, console=Console(stderr=True))
