"""Extracting the readable text of a document: plain text, Markdown, HTML, EPUB, PDF.

Registration and checking call :func:`extract_text` on the bytes of one file; what comes out
is normalised and fingerprinted by :mod:`consentry.fingerprint.text`. The container format is
recognised from the bytes (content wins over names and declared media types, because training
data is often misnamed):

* ``%PDF-`` → the PDF's *text layer*, page by page, with :mod:`pypdf`. Scanned pages without
  a text layer give no words (OCR is out of scope). Encrypted PDFs are refused, even when
  the user password is empty: fail closed, the item is denied with a clear reason.
* a ZIP whose first member is ``mimetype`` = ``application/epub+zip`` (or any ZIP with
  ``META-INF/container.xml``) → the EPUB's content documents in spine order, each stripped of
  markup. Guarded against ZIP bombs: the number of members, the bytes actually inflated
  (counted while inflating, not taken from the headers, which can lie) and the compression
  ratio of every member are capped. Encrypted members (ZIP encryption or an
  ``encryption.xml`` that covers content documents, i.e. DRM) are refused.
* anything else → text (:func:`~consentry.fingerprint.textnorm.decode_text`), with markup
  stripped when the media type says HTML/Markdown or the text opens like an HTML document.

Every failure is an :class:`~consentry.errors.UnreadableInputError` naming the problem, so a
batch reports the file and goes on.

This module does no I/O beyond reading the bytes it is given.
"""

from __future__ import annotations

import io
import re
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from posixpath import dirname, normpath
from posixpath import join as posix_join
from xml.etree import ElementTree

from consentry.errors import UnreadableInputError
from consentry.fingerprint.textnorm import MarkupKind, decode_text, strip_markup

__all__ = [
    "DocumentLimits",
    "ExtractedText",
    "document_kind",
    "extract_text",
    "markup_kind",
]

_HTML_MEDIA_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_MARKDOWN_MEDIA_TYPES = frozenset({"text/markdown", "text/x-markdown"})
_EPUB_MIMETYPE = b"application/epub+zip"


@dataclass(frozen=True, slots=True)
class DocumentLimits:
    """Caps that keep memory bounded on hostile containers (ZIP bombs, huge PDFs)."""

    max_zip_members: int = 10_000
    """EPUB: members in the archive."""
    max_inflated_bytes: int = 256 << 20
    """EPUB: bytes inflated in total, counted while inflating."""
    max_ratio: float = 200.0
    """EPUB: inflated / compressed size of any member (text compresses ~3-10x)."""
    max_pdf_pages: int = 20_000
    max_text_chars: int = 512 << 20
    """PDF / EPUB: characters of extracted text in total."""


DEFAULT_LIMITS = DocumentLimits()


@dataclass(frozen=True, slots=True)
class ExtractedText:
    """The readable text of a document and what it came from (``txt``, ``html``, ``pdf``...)."""

    text: str
    source: str


def document_kind(data: bytes) -> str:
    """``pdf``, ``epub``, ``zip`` (other archives) or ``text``, from the first bytes."""
    if data.startswith(b"%PDF-"):
        return "pdf"
    if data.startswith(b"PK\x03\x04"):
        if data[30:58] == b"mimetype" + _EPUB_MIMETYPE:
            return "epub"
        return "zip"
    return "text"


def markup_kind(text: str, media_type: str) -> MarkupKind:
    """Which markup to strip: from the media type, else sniffed from an unmistakable start."""
    base = media_type.split(";", 1)[0].strip().lower()
    if base in _HTML_MEDIA_TYPES:
        return "html"
    if base in _MARKDOWN_MEDIA_TYPES:
        return "markdown"
    # Sniff only unmistakable HTML documents: stripping "tags" from prose that merely contains
    # "<" would delete words.
    head = text[:1024].lstrip().lower()
    if head.startswith("<?xml"):
        head = head[head.find("?>") + 2 :].lstrip() if "?>" in head else head
    if head.startswith(("<!doctype html", "<html")):
        return "html"
    return "plain"


def extract_text(
    data: bytes,
    media_type: str = "text",
    *,
    legacy_fallback: bool = True,
    limits: DocumentLimits = DEFAULT_LIMITS,
) -> ExtractedText:
    """The readable text of ``data`` with markup already blanked (offsets are not kept for
    containers; for plain/HTML/Markdown input the text keeps the input's length).

    Raises:
        UnreadableInputError: binary data, invalid encodings, encrypted or corrupt PDFs and
            EPUBs, ZIP bombs, documents without text.
    """
    kind = document_kind(data)
    if kind == "pdf":
        return ExtractedText(_pdf_text(data, limits), "pdf")
    if kind in ("epub", "zip"):
        return ExtractedText(_epub_text(data, limits, strict=kind == "zip"), "epub")
    text = decode_text(data, legacy_fallback=legacy_fallback)
    markup = markup_kind(text, media_type)
    return ExtractedText(strip_markup(text, markup), markup)


# --------------------------------------------------------------------------------------------
# PDF


def _pdf_text(data: bytes, limits: DocumentLimits) -> str:
    # Imported here: the PDF reader is only needed for PDFs.
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    pieces: list[str] = []
    total = 0
    try:
        with warnings.catch_warnings():
            # pypdf warns about (and repairs) many small format violations; they are not the
            # caller's concern, and tests run with warnings as errors.
            warnings.simplefilter("ignore")
            reader = PdfReader(io.BytesIO(data), strict=False)
            if reader.is_encrypted:
                raise UnreadableInputError(
                    "encrypted PDF: refused (decrypt it first if you are entitled to)"
                )
            pages = len(reader.pages)
            if pages > limits.max_pdf_pages:
                raise UnreadableInputError(
                    f"PDF has {pages} pages, over the limit of {limits.max_pdf_pages}"
                )
            for page in reader.pages:
                piece = page.extract_text() or ""
                total += len(piece)
                if total > limits.max_text_chars:
                    raise UnreadableInputError("PDF text layer is over the size limit")
                pieces.append(piece)
    except UnreadableInputError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError) as error:
        # pypdf signals malformed files with its own errors and, on some corrupt inputs, with
        # plain Python ones; both mean "this PDF cannot be read".
        raise UnreadableInputError(f"PDF cannot be read: {error}") from error
    except (RecursionError, MemoryError, OverflowError) as error:
        raise UnreadableInputError("PDF cannot be read: malformed structure") from error
    text = "\n\n".join(pieces)
    if not text.strip():
        raise UnreadableInputError("PDF has no text layer (scanned pages need OCR first)")
    return text


# --------------------------------------------------------------------------------------------
# EPUB


_CONTENT_SUFFIXES = (".xhtml", ".html", ".htm")
_ENTITY_DECL = re.compile(rb"<!ENTITY", re.IGNORECASE)
_HEAD = re.compile(r"<head[\s>].*?</head\s*>", re.IGNORECASE | re.DOTALL)


def _epub_text(data: bytes, limits: DocumentLimits, *, strict: bool) -> str:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError) as error:
        raise UnreadableInputError(f"EPUB is not a readable ZIP archive: {error}") from error
    with archive:
        members = archive.infolist()
        if len(members) > limits.max_zip_members:
            raise UnreadableInputError(
                f"EPUB has {len(members)} members, over the limit of {limits.max_zip_members}"
            )
        names = {info.filename: info for info in members}
        if strict and "META-INF/container.xml" not in names:
            raise UnreadableInputError("ZIP archive is not an EPUB (no META-INF/container.xml)")
        if any(info.flag_bits & 0x1 for info in members):
            raise UnreadableInputError("encrypted EPUB (ZIP encryption): refused")
        budget = _Budget(limits)
        if "META-INF/encryption.xml" in names:
            encryption = budget.read(archive, names["META-INF/encryption.xml"])
            if any(s.encode() in encryption.lower() for s in _CONTENT_SUFFIXES):
                raise UnreadableInputError("encrypted EPUB (DRM on content documents): refused")
        order = _spine(archive, names, budget)
        pieces: list[str] = []
        for name in order:
            raw = budget.read(archive, names[name])
            try:
                text = decode_text(raw, legacy_fallback=False)
            except UnreadableInputError as error:
                raise UnreadableInputError(f"EPUB member {name}: {error}") from error
            # The <head> holds the title and metadata, not the chapter's text.
            text = _HEAD.sub(lambda m: " " * len(m.group()), text)
            pieces.append(strip_markup(text, "html"))
    text = "\n\n".join(pieces)
    if not text.strip():
        raise UnreadableInputError("EPUB has no text content")
    return text


class _Budget:
    """Counts inflated bytes across members and refuses bombs while inflating."""

    def __init__(self, limits: DocumentLimits) -> None:
        self.limits = limits
        self.used = 0

    def read(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
        limits = self.limits
        allowed = min(
            limits.max_inflated_bytes - self.used,
            int(max(info.compress_size, 1) * limits.max_ratio) + 4096,
        )
        chunks: list[bytes] = []
        got = 0
        try:
            with archive.open(info) as stream:
                while True:
                    block = stream.read(1 << 16)
                    if not block:
                        break
                    got += len(block)
                    if got > allowed:
                        raise UnreadableInputError(
                            f"EPUB member {info.filename} inflates past the limits "
                            f"(ratio {limits.max_ratio:g}, total {limits.max_inflated_bytes} "
                            "bytes): ZIP bomb refused"
                        )
                    chunks.append(block)
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError) as error:
            # BadZipFile covers CRC errors, zlib.error corrupt deflate streams.
            raise UnreadableInputError(f"EPUB member {info.filename}: {error}") from error
        except RuntimeError as error:  # an encrypted member without a password
            raise UnreadableInputError(f"EPUB member {info.filename}: {error}") from error
        self.used += got
        return b"".join(chunks)


def _xml(raw: bytes, what: str) -> ElementTree.Element:
    # Entity declarations are how XML bombs ("billion laughs") expand; EPUB metadata
    # never needs them.
    if _ENTITY_DECL.search(raw):
        raise UnreadableInputError(f"EPUB {what} declares XML entities: refused")
    try:
        return ElementTree.fromstring(raw)  # noqa: S314 - entity declarations refused above
    except ElementTree.ParseError as error:
        raise UnreadableInputError(f"EPUB {what} is not well-formed XML: {error}") from error


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _spine(
    archive: zipfile.ZipFile, names: dict[str, zipfile.ZipInfo], budget: _Budget
) -> list[str]:
    """Content documents in reading order: the OPF spine, else every XHTML file by name."""
    fallback = sorted(n for n in names if n.lower().endswith(_CONTENT_SUFFIXES))
    container = names.get("META-INF/container.xml")
    if container is None:
        return fallback
    root = _xml(budget.read(archive, container), "container.xml")
    opf_path = next((e.get("full-path") for e in root.iter() if _local(e.tag) == "rootfile"), None)
    if not opf_path or opf_path not in names:
        return fallback
    opf = _xml(budget.read(archive, names[opf_path]), "package document")
    base = dirname(opf_path)
    manifest: dict[str, str] = {}
    for element in opf.iter():
        if _local(element.tag) == "item":
            ident, href = element.get("id"), element.get("href")
            if ident and href:
                manifest[ident] = normpath(posix_join(base, href.split("#", 1)[0]))
    order: list[str] = []
    for element in opf.iter():
        if _local(element.tag) == "itemref":
            path = manifest.get(element.get("idref") or "")
            if path and path in names and path not in order:
                order.append(path)
    return order or fallback
