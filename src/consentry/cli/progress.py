"""Progress on stderr for long runs; silent when stderr is not a terminal (CI, pipes)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

__all__ = ["Ticker", "progress"]


class Ticker(Protocol):
    """Advances the one task of a progress display."""

    def advance(self, n: int = 1) -> None: ...


class _Silent:
    def advance(self, n: int = 1) -> None:
        pass


@contextmanager
def progress(label: str, total: int | None = None) -> Iterator[Ticker]:
    """A progress display for one task named ``label``: done/total, items/s, ETA."""
    if not sys.stderr.isatty():
        # Nothing would be drawn, so rich is not even imported (~40 ms of every gate, check
        # and register run in a pipeline, before any work starts).
        yield _Silent()
        return
    from consentry.cli.progressbar import BarTicker, new_bar

    with new_bar(total) as bar:
        yield BarTicker(bar, bar.add_task(label, total=total))
