"""How the gate's worker processes start — free of heavy imports, so that ``consentry gate``
can start the forkserver before it imports the gate itself.

The forkserver imports the gate (numpy, pyarrow, the recognisers: ~0.5 s) once and forks
every worker from it. Started as soon as the command knows it will need workers, that import
runs on the second core while the main process imports the same modules and verifies the
snapshot, instead of after; the workers are up that much sooner.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from multiprocessing.context import BaseContext

__all__ = ["pool_context", "start_workers_early"]

PRELOAD = [
    # The program's main module, to be imported once here instead of in every worker (each
    # worker otherwise runs it again as ``__mp_main__``). Same semantics as without a
    # forkserver: the module must guard its entry point with ``__name__``. CPython before
    # 3.13.8 ignores this entry (gh-126631: the server is never told the main module's
    # path), so workers still re-run the main module there; what it imports can be
    # preloaded instead (:func:`start_workers_early`).
    "__main__",
    "consentry.gate.run",
    # Imported lazily by the gate (when a snapshot's indexes load and the first item is
    # fingerprinted), so not by the line above: ~0.1 s of CPU in every worker otherwise.
    "consentry.index.hamming",
    "consentry.index.text",
    "consentry.fingerprint.image",
    "consentry.fingerprint.text",
]
"""What the forkserver imports before forking workers (everything a worker runs)."""


def pool_context() -> BaseContext:
    """Worker processes that start fast and use one core each.

    Not ``fork``: the parent may hold threads (pyarrow's pools) that fork would copy mid-state.
    ``forkserver`` starts one clean server that imports the gate once and forks workers from
    it (0.1 s each instead of ~1 s of imports); ``spawn`` where it does not exist. Both start
    from a fresh interpreter that reads ``OPENBLAS_NUM_THREADS=1`` before numpy loads, so N
    workers use N cores instead of N x BLAS threads fighting over them.
    """
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        return ctx
    return multiprocessing.get_context("spawn")


def start_workers_early(main_imports: Sequence[str] = ()) -> None:
    """Start the forkserver now (it returns at once; the server imports in the background).

    The pool that :func:`consentry.gate.run.run_gate` creates later finds it running and
    forks its workers from it. Without a forkserver (``spawn``) there is nothing to start.
    ``main_imports``: what the program's main module imports, preloaded too, so that a
    worker re-running it (see :data:`PRELOAD`) finds it imported — for the ``consentry``
    script, the CLI: ~25 ms of CPU per worker before its first item otherwise.
    """
    context = pool_context()
    if context.get_start_method() == "forkserver":
        from multiprocessing import forkserver

        context.set_forkserver_preload([*PRELOAD, *main_imports])
        forkserver.ensure_running()
