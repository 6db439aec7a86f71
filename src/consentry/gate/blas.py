"""One BLAS thread per process — imported for its effect, before anything loads numpy (by
``consentry.cli.main``, so every command gets it; the gate is where it was measured).

The recognisers multiply image-sized matrices with numpy, and OpenBLAS would run each product
on every core, its threads spinning while they wait for work. The gate parallelises by
processes instead (``--workers N``: N processes, one core each), so BLAS threads only compete:
on this project's 2-core VM they doubled the CPU time of a 1-worker image run for a few per
cent of wall clock when the machine was idle, and made it ~5x slower when other work ran
(recognising 3,000 images: 212 s with BLAS threads against 44 s without, load average 5).

OpenBLAS reads ``OPENBLAS_NUM_THREADS`` once, when numpy loads it; a value the user set wins.
The worker processes inherit the variable (the forkserver starts from this environment).
"""

from __future__ import annotations

import os
import sys

__all__ = ["LOADED_TOO_LATE"]

LOADED_TOO_LATE = "numpy" in sys.modules
"""True when numpy was already loaded, so BLAS keeps the thread count it started with."""

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
