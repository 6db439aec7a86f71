"""Fingerprints: bytes in, fingerprints out; one module per modality. Pure.

:func:`default_fingerprinters` lists what registration and checking compute. Image, text and
audio recognisers join this list as they arrive; each implements
:class:`~consentry.fingerprint.base.Fingerprinter`.
"""

from __future__ import annotations

from consentry.fingerprint.base import Fingerprint, Fingerprinter
from consentry.fingerprint.exact import ExactFingerprinter

__all__ = ["Fingerprint", "Fingerprinter", "default_fingerprinters", "fingerprint_all"]


def default_fingerprinters() -> list[Fingerprinter]:
    return [ExactFingerprinter()]


def fingerprint_all(
    data: bytes, media_type: str, fingerprinters: list[Fingerprinter] | None = None
) -> list[Fingerprint]:
    """Every applicable fingerprint of ``data``, in a stable order."""
    out: list[Fingerprint] = []
    for fp in fingerprinters if fingerprinters is not None else default_fingerprinters():
        if fp.applies_to(media_type):
            out.extend(fp.fingerprint(data, media_type))
    return out
