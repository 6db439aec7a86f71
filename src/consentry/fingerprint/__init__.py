"""Fingerprints: bytes in, fingerprints out; one module per modality. Pure.

:func:`default_fingerprinters` lists what registration and checking compute. Image, text and
audio recognisers join this list as they arrive; each implements
:class:`~consentry.fingerprint.base.Fingerprinter`.
"""

from __future__ import annotations

from consentry.fingerprint.base import Fingerprint, Fingerprinter
from consentry.fingerprint.exact import ExactFingerprinter, IsccFingerprinter

__all__ = ["Fingerprint", "Fingerprinter", "default_fingerprinters", "fingerprint_all"]


def default_fingerprinters() -> list[Fingerprinter]:
    from consentry.fingerprint.image import ImageFingerprinter
    from consentry.fingerprint.text import TextFingerprinter

    return [ExactFingerprinter(), IsccFingerprinter(), TextFingerprinter(), ImageFingerprinter()]


def fingerprint_all(
    data: bytes,
    media_type: str,
    fingerprinters: list[Fingerprinter] | None = None,
    *,
    query: bool = False,
) -> list[Fingerprint]:
    """Every applicable fingerprint of ``data``, in a stable order.

    With ``query=True`` (recognising an item rather than registering a work), fingerprinters
    marked ``registration_only`` are skipped: nothing matches on what they compute; and a
    fingerprinter with a ``query_fingerprint`` method computes only what its matchers read
    (the text fingerprinter leaves out its whole-document MinHash).
    """
    out: list[Fingerprint] = []
    for fp in fingerprinters if fingerprinters is not None else default_fingerprinters():
        if query and getattr(fp, "registration_only", False):
            continue
        if fp.applies_to(media_type):
            compute = getattr(fp, "query_fingerprint", fp.fingerprint) if query else fp.fingerprint
            out.extend(compute(data, media_type))
    return out
