"""Fingerprints whose value is computed only when something reads it.

Some image fingerprints are needed only by a later matching stage that most items never
reach: the small-rotation hashes matter only when the plain whole-picture hashes matched
nothing, and the ORB keypoints only when no whole-picture hash matched at all. Computing
them for every item costs about a third of an item's fingerprinting time (measured in
``docs/recognition-images.md``). The gate, registration and ``consentry match`` all call
``fingerprint(...) -> list[Fingerprint]`` first and then the index, so the list keeps its
shape and the expensive values are filled in on first read instead:

- :class:`Deferred` runs a computation at most once and keeps its result; several
  fingerprints can share one (the eight rotation hashes come from one computation).
- :class:`DeferredFingerprint` is a :class:`~consentry.fingerprint.base.Fingerprint` whose
  ``value`` property reads its entry of such a result. ``kind`` and ``region`` are known
  up front, so an index can decide from them alone whether it needs the value. Everything
  else behaves as for a plain fingerprint: equality and hashing compare
  ``(kind, value, region)`` (reading the value), and pickling turns it into a plain
  :class:`~consentry.fingerprint.base.Fingerprint` with the value computed, so nothing
  lazy crosses a process boundary.

The computation must be pure (it is run in whatever order, at most once, or never).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Generic, TypeVar

from consentry.fingerprint.base import Fingerprint

__all__ = ["Deferred", "DeferredFingerprint"]

T = TypeVar("T")


class Deferred(Generic[T]):
    """The result of ``compute()``, computed on the first :meth:`get` and kept."""

    __slots__ = ("_compute", "_result")

    def __init__(self, compute: Callable[[], T]) -> None:
        self._compute: Callable[[], T] | None = compute
        self._result: T | None = None

    @property
    def done(self) -> bool:
        """Whether the computation has run."""
        return self._compute is None

    def get(self) -> T:
        if self._compute is not None:
            self._result = self._compute()
            self._compute = None  # done; and drop what the computation held (pixels)
        return self._result  # type: ignore[return-value]


class DeferredFingerprint(Fingerprint):
    """A fingerprint whose value is entry ``key`` of a shared :class:`Deferred` mapping."""

    __slots__ = ("_key", "_source")
    _key: str
    _source: Deferred[Mapping[str, str]]

    def __init__(
        self, kind: str, region: str, source: Deferred[Mapping[str, str]], key: str
    ) -> None:
        # Fingerprint is a frozen dataclass: set its remaining fields the way it does.
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "region", region)
        object.__setattr__(self, "_source", source)
        object.__setattr__(self, "_key", key)

    @property
    def value(self) -> str:
        return self._source.get()[self._key]

    @property
    def computed(self) -> bool:
        """Whether the value has been computed (for tests and measurements)."""
        return self._source.done

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Fingerprint):
            return NotImplemented
        return (self.kind, self.value, self.region) == (other.kind, other.value, other.region)

    def __hash__(self) -> int:
        # The same as a plain Fingerprint with these fields (dataclass hash of the tuple).
        return hash((self.kind, self.value, self.region))

    def __reduce__(self) -> tuple[type[Fingerprint], tuple[str, str, str]]:
        return (Fingerprint, (self.kind, self.value, self.region))
