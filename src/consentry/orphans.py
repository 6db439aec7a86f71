"""Child processes that end with the process that started them.

A child of ``multiprocessing`` (a gate worker, the e-mail outbox, a uvicorn worker) is told to
stop by its parent — unless the parent is killed outright (``kill -9``, the OOM killer, a
crash). Then nothing tells it: it waits forever on pipes nobody writes, or goes on serving and
sending on its own. The standard library offers no "die with the parent" for these children
(Linux's ``PR_SET_PDEATHSIG`` is not exposed, and fires on the death of the *thread* that
forked); what it does offer is the parent's sentinel, which becomes ready when the parent ends.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable

__all__ = ["when_parent_ends"]


def when_parent_ends(action: Callable[[], object], *, name: str) -> bool:
    """Call ``action`` on a daemon thread once the process that started this one has ended.

    Returns whether there is such a parent to watch (``False`` in a program's own process).
    The thread blocks on the parent's sentinel, so it costs nothing until then.
    """
    parent = multiprocessing.parent_process()
    if parent is None:
        return False

    def watch() -> None:
        parent.join()  # wakes only when the parent has ended
        action()

    threading.Thread(target=watch, name=name, daemon=True).start()
    return True
