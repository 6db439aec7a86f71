"""Guessing a file's media type from its first bytes, then its name.

Content wins over the extension because training data is often misnamed; the extension is
only a fallback for formats without a signature (plain text).
"""

from __future__ import annotations

import mimetypes

from consentry.domain.model import MediaType

__all__ = ["detect_media_type"]

_SIGNATURES: tuple[tuple[bytes, MediaType], ...] = (
    (b"\xff\xd8\xff", MediaType.IMAGE),  # JPEG
    (b"\x89PNG\r\n\x1a\n", MediaType.IMAGE),
    (b"GIF87a", MediaType.IMAGE),
    (b"GIF89a", MediaType.IMAGE),
    (b"BM", MediaType.IMAGE),
    (b"II*\x00", MediaType.IMAGE),  # TIFF little-endian
    (b"MM\x00*", MediaType.IMAGE),  # TIFF big-endian
    (b"ID3", MediaType.AUDIO),  # MP3 with ID3 tag
    (b"fLaC", MediaType.AUDIO),
    (b"OggS", MediaType.AUDIO),
    (b"%PDF-", MediaType.TEXT),
)


def detect_media_type(data: bytes, filename: str = "") -> MediaType:
    head = data[:16]
    for magic, media in _SIGNATURES:
        if head.startswith(magic):
            return media
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return MediaType.IMAGE
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return MediaType.AUDIO
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"heic", b"heix", b"mif1"):
            return MediaType.IMAGE
        return MediaType.AUDIO if brand in (b"M4A ", b"M4B ") else MediaType.VIDEO
    # EPUB: a ZIP whose first member is the stored "mimetype" file (EPUB OCF, section 4.3).
    if head[:4] == b"PK\x03\x04" and data[30:58] == b"mimetypeapplication/epub+zip":
        return MediaType.TEXT
    start = data[:512].lstrip()[:15].lower()
    if start.startswith((b"<!doctype html", b"<html>", b"<html ")):
        return MediaType.TEXT
    guessed, _ = mimetypes.guess_type(filename)
    if guessed:
        major = guessed.split("/", 1)[0]
        if major in ("image", "audio", "video", "text"):
            return MediaType(major)
        if guessed in ("application/epub+zip", "application/xhtml+xml", "application/json"):
            return MediaType.TEXT
    return MediaType.OTHER
