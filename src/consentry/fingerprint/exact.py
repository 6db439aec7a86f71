"""Exact fingerprints of any file: SHA-256 of the bytes and the ISO 24138 ISCC.

The ISCC is the composite of the Data-Code (content-defined chunking + MinHash over the bytes,
so near-identical files get near-identical codes) and the Instance-Code (a BLAKE3 hash of the
bytes), computed by ``iscc-core``, the ISCC Foundation's reference implementation.
"""

from __future__ import annotations

import hashlib
import io

from consentry.fingerprint.base import Fingerprint

__all__ = ["ExactFingerprinter", "IsccFingerprinter", "iscc_code", "sha256_hex"]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def iscc_code(data: bytes) -> str:
    # Imported here, not at module level: iscc-core pulls in pydantic and loguru (~0.1 s),
    # and only registration computes an ISCC; the gate, `check` and `match` never do, and
    # every gate worker would otherwise pay that import before its first item.
    import iscc_core

    data_code = iscc_core.gen_data_code_v0(io.BytesIO(data))["iscc"]
    instance_code = iscc_core.gen_instance_code_v0(io.BytesIO(data))["iscc"]
    code = iscc_core.gen_iscc_code_v0([data_code, instance_code])["iscc"]
    assert isinstance(code, str)  # noqa: S101 - iscc-core is untyped; it returns str codes
    return code


class ExactFingerprinter:
    """SHA-256 of any bytes: byte-identical copies."""

    name = "exact"

    def applies_to(self, media_type: str) -> bool:
        return True

    def fingerprint(self, data: bytes, media_type: str) -> list[Fingerprint]:
        return [Fingerprint("sha256", sha256_hex(data))]


class IsccFingerprinter:
    """The ISO 24138 ISCC of any bytes: an interoperable identifier kept with the work.

    Registration-only: no matcher queries it, and at ~0.2 ms per item it would be most of the
    cost of checking small items.
    """

    name = "iscc"
    registration_only = True

    def applies_to(self, media_type: str) -> bool:
        return True

    def fingerprint(self, data: bytes, media_type: str) -> list[Fingerprint]:
        return [Fingerprint("iscc", iscc_code(data))]
