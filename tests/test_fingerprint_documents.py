"""Extracting text from documents (consentry.fingerprint.documents) and the fast token path."""

from __future__ import annotations

import io
import zipfile
from html import escape

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consentry.errors import UnreadableInputError
from consentry.fingerprint.documents import (
    DocumentLimits,
    document_kind,
    extract_text,
    markup_kind,
)
from consentry.fingerprint.media import detect_media_type
from consentry.fingerprint.textnorm import iter_joined_tokens, normalise

# -- tiny document generators (also used by test_match_text_cli.py) ------------------------

CONTAINER = (
    '<?xml version="1.0"?><container version="1.0" '
    'xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles>'
    '<rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>'
    "</rootfiles></container>"
)


def make_epub(chapters: list[str], *, extra: dict[str, bytes] | None = None) -> bytes:
    """An EPUB 3 whose spine lists the chapters in *reverse file-name order*."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("mimetype", "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        archive.writestr("META-INF/container.xml", CONTAINER)
        names = [f"ch{len(chapters) - n:02d}.xhtml" for n in range(len(chapters))]
        items = "".join(
            f'<item id="c{n}" href="text/{name}" media-type="application/xhtml+xml"/>'
            for n, name in enumerate(names)
        )
        spine = "".join(f'<itemref idref="c{n}"/>' for n in range(len(names)))
        archive.writestr(
            "OEBPS/content.opf",
            '<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0">'
            f"<manifest>{items}</manifest><spine>{spine}</spine></package>",
        )
        for name, chapter in zip(names, chapters, strict=True):
            body = "".join(f"<p>{escape(p)}</p>" for p in chapter.split("\n\n"))
            archive.writestr(
                f"OEBPS/text/{name}",
                '<?xml version="1.0" encoding="utf-8"?><html xmlns="http://www.w3.org/1999/xhtml">'
                f"<head><title>t</title></head><body>{body}</body></html>",
                compress_type=zipfile.ZIP_DEFLATED,
            )
        for name, data in (extra or {}).items():
            archive.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def make_pdf(text: str, *, words_per_line: int = 12, lines_per_page: int = 40) -> bytes:
    """A minimal PDF 1.4 with a real text layer (Helvetica, one Tj per line)."""
    words = text.split()
    lines = [" ".join(words[i : i + words_per_line]) for i in range(0, len(words), words_per_line)]
    pages = [lines[i : i + lines_per_page] for i in range(0, len(lines), lines_per_page)]
    objects: list[bytes] = []
    page_ids = [4 + 2 * n for n in range(len(pages))]
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    kids = " ".join(f"{p} 0 R" for p in page_ids)
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for number, page in enumerate(pages):
        ops = ["BT /F1 10 Tf 14 TL 40 800 Td"]
        for line in page:
            safe = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            ops.append(f"({safe}) Tj T*")
        ops.append("ET")
        stream = "\n".join(ops).encode("latin-1", "replace")
        contents = page_ids[number] + 1
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % contents
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for index, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % index + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(
        b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    )
    return out.getvalue()


def encrypt_pdf(data: bytes, password: str = "secret") -> bytes:  # noqa: S107 - a test fixture
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(password, algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def zip_bomb_epub(inflated: int = 64 << 20) -> bytes:
    """A valid-looking EPUB whose one chapter inflates from ~64 KB to ``inflated`` bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("mimetype", "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        archive.writestr("META-INF/container.xml", CONTAINER)
        archive.writestr(
            "OEBPS/content.opf",
            '<package xmlns="http://www.idpf.org/2007/opf"><manifest>'
            '<item id="a" href="a.xhtml" media-type="application/xhtml+xml"/></manifest>'
            '<spine><itemref idref="a"/></spine></package>',
        )
        with archive.open("OEBPS/a.xhtml", "w", force_zip64=True) as member:
            block = b" " * (1 << 20)
            for _ in range(inflated >> 20):
                member.write(block)
    return buffer.getvalue()


CHAPTER_ONE = "It was a bright cold day in April.\n\nThe clocks were striking thirteen."
CHAPTER_TWO = "Call me Ishmael. Some years ago, never mind how long precisely."


def words(text: str) -> list[str]:
    return normalise(text).tokens


def test_plain_markdown_and_html_keep_only_the_readable_words() -> None:
    assert words(extract_text(b"Hello, world").text) == ["hello", "world"]
    md = extract_text(b"# Title\n\nSome *emphasis* and a [link](http://x.org).", "text/markdown")
    assert words(md.text) == ["title", "some", "emphasis", "and", "a", "link"]
    html = b"<!DOCTYPE html><html><script>var x=1;</script><p>caf&eacute; au lait</p></html>"
    extracted = extract_text(html)  # sniffed: declared only as "text"
    assert (extracted.source, words(extracted.text)) == ("html", ["café", "au", "lait"])


def test_markup_kind_sniffs_only_unmistakable_html() -> None:
    assert markup_kind('<?xml version="1.0"?>\n<html><body>x</body></html>', "text") == "html"
    assert markup_kind("a < b and c > d", "text") == "plain"
    assert markup_kind("anything", "text/html; charset=utf-8") == "html"


def test_epub_chapters_come_in_spine_order() -> None:
    data = make_epub([CHAPTER_ONE, CHAPTER_TWO])
    assert document_kind(data) == "epub"
    assert detect_media_type(data, "book.bin").value == "text"
    extracted = extract_text(data)
    assert extracted.source == "epub"
    assert words(extracted.text) == words(CHAPTER_ONE) + words(CHAPTER_TWO)


def test_epub_zip_bomb_is_refused_while_inflating() -> None:
    with pytest.raises(UnreadableInputError, match="ZIP bomb"):
        extract_text(zip_bomb_epub(32 << 20))
    # A total budget also applies, however honest each member's ratio.
    small = DocumentLimits(max_inflated_bytes=1000)
    with pytest.raises(UnreadableInputError, match="limits"):
        extract_text(make_epub([CHAPTER_ONE * 50]), limits=small)


def test_drm_and_broken_epubs_are_refused() -> None:
    drm = b'<encryption><EncryptedData><CipherReference URI="OEBPS/text/ch01.xhtml"/>'
    drm += b"</EncryptedData></encryption>"
    with pytest.raises(UnreadableInputError, match="DRM"):
        extract_text(make_epub([CHAPTER_ONE], extra={"META-INF/encryption.xml": drm}))
    truncated = make_epub([CHAPTER_ONE])[:200]
    with pytest.raises(UnreadableInputError, match="EPUB"):
        extract_text(truncated)
    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><container>&a;</container>'
    evil = _replace_member(make_epub([CHAPTER_ONE]), "META-INF/container.xml", bomb)
    with pytest.raises(UnreadableInputError, match="entities"):
        extract_text(evil)


def _replace_member(epub: bytes, name: str, content: bytes) -> bytes:
    source = zipfile.ZipFile(io.BytesIO(epub))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            data = content if info.filename == name else source.read(info)
            target.writestr(info, data)
    return out.getvalue()


def test_a_zip_that_is_not_an_epub_is_refused() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(UnreadableInputError, match="not an EPUB"):
        extract_text(buffer.getvalue())


def test_pdf_text_layer_is_extracted() -> None:
    text = " ".join(f"word{n}" for n in range(200))
    extracted = extract_text(make_pdf(text))
    assert extracted.source == "pdf"
    assert words(extracted.text) == words(text)


def test_encrypted_and_corrupt_pdfs_are_refused() -> None:
    with pytest.raises(UnreadableInputError, match="encrypted PDF"):
        extract_text(encrypt_pdf(make_pdf("some secret words here")))
    with pytest.raises(UnreadableInputError, match="PDF"):
        extract_text(b"%PDF-1.4\n" + b"\x00garbage" * 100)


def test_binary_and_invalid_text_are_refused() -> None:
    with pytest.raises(UnreadableInputError, match=r"NUL|binary"):
        extract_text(bytes(range(256)) * 4)
    with pytest.raises(UnreadableInputError, match="UTF-8"):
        extract_text("Привет мир".encode("koi8-r") * 10, legacy_fallback=False)


# -- the fast tokenising path agrees with normalise() ------------------------------------------

_ALPHABET = st.sampled_from(
    list("ab z09 '`-\n\t\r.,!")
    + list("\u2018\u2019\u201c\u201d\u2013\u2014\u2026\u00a0\u00ad\u200b\u2010\u00ac\u2028\u0085")
    + list("\u00e9\u00df\ufb01\u00b4\u02bc\u0301\udc80")
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_ALPHABET, max_size=60).map("".join))
def test_fast_path_tokens_equal_normalise(text: str) -> None:
    assert "\x1f".join(iter_joined_tokens(text)) == "\x1f".join(normalise(text).tokens)


def test_streamed_fingerprint_equals_the_one_shot_computation() -> None:
    import numpy as np

    from consentry.fingerprint.text import (
        StopHashes,
        _fingerprint_stream,
        _fingerprint_tokens,
        kgram_hashes,
    )

    rng = np.random.default_rng(1)
    for trial in range(300):
        count = int(rng.integers(0, 300))
        tokens = rng.integers(0, 2**62, count).astype(np.uint64)  # no ties: exact equality
        cuts = sorted(set(rng.integers(1, max(count, 2), int(rng.integers(0, 6))).tolist()))
        batches = [b for b in np.split(tokens, [c for c in cuts if c < count]) if b.size]
        k, window = int(rng.integers(1, 7)), int(rng.integers(1, 9))
        stop = None
        if trial % 3 == 0 and count > k:
            stop = StopHashes(kgram_hashes(tokens, k)[rng.integers(0, count - k + 1, 5)], k=k)
        whole = _fingerprint_tokens(tokens, k=k, window=window, stop=stop)
        streamed = _fingerprint_stream(iter(batches), k=k, window=window, stop=stop)
        assert streamed == whole, (count, k, window)
