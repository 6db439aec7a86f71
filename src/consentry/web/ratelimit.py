"""In-memory limits for what the service itself must throttle: operator login attempts.

Signature submissions are *not* limited here: the statements service counts them per IP and
per e-mail domain in the database (so the limits hold across worker processes and restarts)
and marks breaches as fraudulent silently, instead of telling a bot it was caught. Login
attempts are different: refusing them loudly is right, and per-process memory is enough to
make password guessing slow.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

__all__ = ["SlidingWindowLimiter"]


class SlidingWindowLimiter:
    """At most ``limit`` events per ``window`` seconds per key (e.g. a client IP)."""

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._clock = clock
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> bool:
        """Record one event; False when the key is over its limit (the event is not counted)."""
        now = self._clock()
        with self._lock:
            events = self._events.get(key)
            if events is None:
                if len(self._events) >= self.max_keys:
                    self._prune(now)
                events = self._events.setdefault(key, deque())
            while events and events[0] <= now - self.window:
                events.popleft()
            if len(events) >= self.limit:
                return False
            events.append(now)
            return True

    def _prune(self, now: float) -> None:
        # Bounded memory under a flood of distinct addresses: drop keys with no recent events,
        # and if that is not enough, start over (a forgotten key only gets a fresh allowance).
        stale = [k for k, ev in self._events.items() if not ev or ev[-1] <= now - self.window]
        for key in stale:
            del self._events[key]
        if len(self._events) >= self.max_keys:
            self._events.clear()
