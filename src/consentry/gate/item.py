"""One training item as the gate sees it, whatever the dataset format.

Sources turn rows, files or tar members into :class:`Item` values; the gate decides on them;
sinks write the admitted ones back in the source's own format using ``record`` (the original
row / member, untouched) so that the admitted subset is byte-for-byte what came in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Item"]


@dataclass(frozen=True, slots=True)
class Item:
    key: str
    """Stable, unique key within the dataset (file path relative to the root, row number, tar
    member stem); decisions are reported and ordered by it."""
    ordinal: int
    """Position of the item in the source's deterministic order (0-based)."""
    data: bytes | None = None
    """The content to recognise (file bytes, image bytes, or UTF-8 text)."""
    media_type: str | None = None
    """``"image"`` / ``"text"`` / ... when the source knows it; ``None`` means sniff."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """Licence, source, provenance tags, URL ... as the dataset states them (untrusted)."""
    error: str | None = None
    """Why the item could not be read; such items are denied as ``unreadable``."""
    record: Any = None
    """The source-specific original (row dict, tar member group, path) for the sink."""
