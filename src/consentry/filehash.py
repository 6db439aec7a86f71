"""Hashing files in bounded memory (snapshots, gate inputs and outputs)."""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["hash_file", "sha256_file"]

_BLOCK = 1 << 20


def hash_file(path: Path) -> tuple[int, str]:
    """(size in bytes, SHA-256 hex) of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def sha256_file(path: Path) -> str:
    return hash_file(path)[1]
