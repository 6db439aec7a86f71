"""Which processes still run, from /proc (Linux): for tests that kill servers and runs and
check that nothing they started is left behind."""

from __future__ import annotations

import re
from pathlib import Path

HAVE_PROC = Path("/proc/self/status").exists()


def running_parent(pid: int) -> int | None:
    """The parent of process ``pid`` if it still runs (not ended, not a zombie)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None  # ended
    ppid = re.search(r"^PPid:\s+(\d+)$", status, re.M)
    return None if ppid is None or re.search(r"^State:\s+Z", status, re.M) else int(ppid[1])


def live_descendants(pid: int) -> set[int]:
    """Processes below ``pid`` that still run."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (parent := running_parent(int(entry.name))) is not None:
            parents[int(entry.name)] = parent
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def still_running(pids: set[int]) -> set[int]:
    return {pid for pid in pids if running_parent(pid) is not None}
