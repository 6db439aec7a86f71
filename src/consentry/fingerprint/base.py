"""The fingerprinter interface every recogniser plugs into.

A fingerprinter turns the bytes of one file into zero or more :class:`Fingerprint` values.
Registration stores them (never the bytes); checking an item computes the same fingerprints
and asks the match indexes which registered works they point to. Modality-specific
recognisers (image, text, audio) implement :class:`Fingerprinter` and are listed in
:func:`consentry.fingerprint.default_fingerprinters`.

This module is pure: no I/O, no database.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["Fingerprint", "Fingerprinter"]


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """One fingerprint of a work or item.

    ``kind`` names the algorithm and its version (``"sha256"``, ``"iscc"``, ``"pdq"``, ...);
    ``value`` is its canonical text form (lower-case hex or the ISCC string), so that it can be
    stored, indexed and compared as a string. ``region`` distinguishes several fingerprints of
    the same kind for one file (e.g. ``"full"``, ``"centre-80"``, ``"q1"``).
    """

    kind: str
    value: str
    region: str = "full"


@runtime_checkable
class Fingerprinter(Protocol):
    """Computes fingerprints of one modality.

    Implementations must be pure functions of their input bytes and deterministic across
    machines, because a registry snapshot made on one machine is matched on another.
    """

    @property
    def name(self) -> str:
        """A short stable name, e.g. ``"exact"`` or ``"image-pdq"``."""

    def applies_to(self, media_type: str) -> bool:
        """Whether this fingerprinter handles the media type (``"image"``, ``"text"``, ...)."""

    def fingerprint(self, data: bytes, media_type: str) -> list[Fingerprint]:
        """Fingerprints of ``data``; raises ``UnreadableInputError`` if it cannot decode it."""
