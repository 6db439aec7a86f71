"""Decoding and normalisation of text for containment fingerprints.

Registered writing reaches training sets re-typeset, OCR'd, wrapped in HTML or Markdown and
with typos. This module turns the bytes of one item into a sequence of *word tokens* that is
stable under those changes, and remembers for every token where it came from in the decoded
text so that evidence can point at characters a rights holder can read.

Pipeline (every step is linear in the input length):

1. :func:`decode_text` — bytes to ``str``: BOM-marked UTF-8/16/32, else strict UTF-8, else
   (optionally) cp1252; binary data posing as text is refused with
   :class:`~consentry.errors.UnreadableInputError`.
2. :func:`strip_markup` — HTML or Markdown to plain text. The output has *exactly the same
   length* as the input (markup is blanked, not removed), so offsets into the stripped text
   are offsets into the original markup.
3. :func:`normalise` — word tokens with their ``[start, end)`` character spans in the text it
   was given.

What :func:`normalise` makes equal (and why):

* Unicode NFKC then case folding then NFKC again (Unicode's ``toNFKC_Casefold`` recipe, without
  the default-ignorable removal, which step 5 does): ligatures (``ﬁ``), full-width forms,
  superscripts and case (``ß`` → ``ss``) do not change a token.
* A word is a run of letters, digits and combining marks. Apostrophes *inside* a word
  (``don't``, ``don\u2019t``, ``don\u02bct``) are dropped, so every apostrophe style gives ``dont``.
* A hyphen (``-``, U+2010, U+2011, or OCR's ``¬``) directly followed by a line break joins the
  two halves: ``exam-\\nple`` → ``example``. The price: a compound that happens to break at its
  own hyphen (``well-\\nknown``) becomes ``wellknown`` while the unbroken ``well-known`` gives
  ``well`` ``known``; typesetting does not tell the two apart.
* Soft hyphens and zero-width characters (U+00AD, U+200B-U+200D, U+2060, U+FEFF) inside a word
  are dropped: PDF extraction and web typesetting scatter them through words.
* Every other character — punctuation, all quote and dash styles, symbols, whitespace of any
  kind and length — only separates words. That is how quotes and dashes are "unified": they
  never reach a token, so ``“x” — y`` and ``"x" - y`` give the same tokens.
* Characters that NFKC expands into non-word characters inside a token (``¼`` → ``1\u20444``) are
  dropped from the token (``14``) so that each token keeps exactly one source span.

Offsets invariant (tested with hypothesis): for every token ``i``,
``normalise(text[starts[i]:ends[i]]).tokens == [tokens[i]]``.

This module is pure: no I/O.
"""

from __future__ import annotations

import functools
import html
import re
import sys
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Literal

import numpy as np
import numpy.typing as npt

from consentry.errors import UnreadableInputError

__all__ = [
    "MarkupKind",
    "NormalisedText",
    "decode_text",
    "iter_joined_tokens",
    "iter_joined_utf8",
    "iter_token_batches",
    "normalise",
    "strip_markup",
]

MarkupKind = Literal["html", "markdown", "plain"]

#: Above this share of control characters (other than tab, newlines and form feeds) the bytes
#: are treated as binary. Real text has almost none; 1 % leaves room for stray escape codes.
_MAX_CONTROL_RATIO = 0.01

#: With the cp1252 fallback, at least this share of the bytes must be ASCII. Western European
#: text in cp1252 is overwhelmingly ASCII; Shift-JIS, GBK, KOI8-R or Latin-2-heavy text is not,
#: and would only turn into mojibake that silently defeats matching.
_MIN_ASCII_RATIO_FOR_CP1252 = 0.90

_SEP = "\x1f"  # unit separator: cannot occur in a token (it is a control character)

# Characters dropped inside a word rather than splitting it.
_JOINERS = "\u00ad\u200b\u200c\u200d\u2060\ufeff"
_APOSTROPHES = "'`\u00b4\u2018\u2019\u02bc\u2032"
_LINE_HYPHENS = "\\-\u2010\u2011\u00ac"


@functools.cache
def _marks_class() -> str:
    """Body of a regex character class matching every combining mark (categories M*).

    Python's ``\\w`` does not match combining marks, so without them ``cafe\\u0301`` or a
    Devanagari word would be split at every accent or vowel sign. Computed once (about 0.1 s)
    and only when non-ASCII text is seen.
    """
    ranges: list[tuple[int, int]] = []
    for code in range(sys.maxunicode + 1):
        if unicodedata.category(chr(code))[0] == "M":
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1] = (ranges[-1][0], code)
            else:
                ranges.append((code, code))
    return "".join(f"\\U{lo:08x}" if lo == hi else f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in ranges)


@functools.cache
def _unicode_patterns() -> tuple[re.Pattern[str], re.Pattern[str]]:
    marks = _marks_class()
    char = rf"[^\W_][{marks}]*"
    glue = (
        rf"(?:[{_APOSTROPHES}{_JOINERS}]|[{_LINE_HYPHENS}][ \t]*(?:\r\n|[\n\r\u0085\u2028])[ \t]*)"
    )
    token = re.compile(rf"{char}(?:{glue}*{char})*")
    # Inside a token after NFKC + casefold: everything but word characters, marks and the
    # separator goes (apostrophes, joiners, hyphen + line break, NFKC's fraction slashes...).
    # ... and combining marks that NFKC put at the start of a token (U+0E33 THAI SARA AM on
    # its own becomes U+0E4D NIKHAHIT + U+0E32): tokenising the result again would drop
    # them, and a token must read back as itself (a hypothesis test found this one).
    junk = re.compile(rf"[^\w{marks}{_SEP}]|_|(?:(?<={_SEP})|^)[{marks}]+")
    return token, junk


# The ASCII fast path: the same grammar restricted to ASCII, on the lower-cased text (for ASCII,
# lower-casing is case folding, NFKC is the identity and offsets do not move).
_ASCII_TOKEN = re.compile(r"[a-z0-9]+(?:(?:['`]|-[ \t]*(?:\r\n|[\n\r])[ \t]*)*[a-z0-9]+)*")
_ASCII_JUNK = str.maketrans("", "", "'`- \t\r\n")


_Batch = tuple[str, npt.NDArray[np.int64], npt.NDArray[np.int64]]


@dataclass(frozen=True, slots=True, eq=False)
class NormalisedText:
    """Word tokens of a text and, for each, its ``[start, end)`` span in the text given.

    ``starts`` and ``ends`` are character offsets (not bytes) into the string that was passed
    to :func:`normalise`; after :func:`strip_markup` they are offsets into the markup itself.
    """

    tokens: list[str]
    starts: npt.NDArray[np.int64]
    ends: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.tokens)

    def span(self, first: int, stop: int) -> tuple[int, int]:
        """Character span ``[start, end)`` covering tokens ``first .. stop - 1``."""
        if not 0 <= first < stop <= len(self.tokens):
            raise IndexError(f"token range {first}..{stop} outside 0..{len(self.tokens)}")
        return int(self.starts[first]), int(self.ends[stop - 1])


# --------------------------------------------------------------------------------------------
# 1. decoding


def decode_text(data: bytes, *, legacy_fallback: bool = True) -> str:
    """Decode the bytes of a text item, refusing binary data.

    Order of attempts:

    1. A byte-order mark decides: UTF-32 (LE/BE), UTF-8, UTF-16 (LE/BE); decoding is strict.
    2. Without a BOM, any NUL byte means binary data (or BOM-less UTF-16/32, which we do not
       guess) and is refused.
    3. Strict UTF-8.
    4. If that fails and ``legacy_fallback`` is true: cp1252, but only when it decodes without
       undefined bytes and at least 90 % of the bytes are ASCII. This accepts the legacy
       Windows/Latin-1 files common in older book corpora, whose words then match exactly,
       and refuses other legacy encodings, which cp1252 would turn into mojibake that looks
       readable but can never match a registered work (fail closed: refused items are denied,
       mis-decoded items might be admitted). Pass ``legacy_fallback=False`` to refuse all
       invalid UTF-8.

    Finally, text with more than 1 % control characters (other than tab, line and page
    breaks) is refused as binary.

    Raises:
        UnreadableInputError: empty input, binary data, or undecodable bytes.
    """
    if not data:
        raise UnreadableInputError("text item is empty")
    text = _decode_with_bom(data)
    if text is None:
        if b"\x00" in data:
            raise UnreadableInputError(
                "text item contains NUL bytes: binary data, or UTF-16/32 without a byte-order mark"
            )
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as utf8_error:
            text = _decode_legacy(data) if legacy_fallback else None
            if text is None:
                raise UnreadableInputError(
                    f"text item is not valid UTF-8 (byte {utf8_error.start}); re-encode it as UTF-8"
                ) from utf8_error
    elif "\x00" in text:
        raise UnreadableInputError("text item contains NUL characters: binary data")
    if not text:
        raise UnreadableInputError("text item is empty")
    if _control_ratio(text) > _MAX_CONTROL_RATIO:
        raise UnreadableInputError("text item is mostly control characters: binary data")
    return text


_BOMS: tuple[tuple[bytes, str], ...] = (
    # UTF-32 first: its little-endian BOM starts with UTF-16's.
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xef\xbb\xbf", "utf-8"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)


def _decode_with_bom(data: bytes) -> str | None:
    for bom, codec in _BOMS:
        if data.startswith(bom):
            try:
                return data[len(bom) :].decode(codec)
            except UnicodeDecodeError as error:
                raise UnreadableInputError(
                    f"text item has a {codec} byte-order mark but is not valid {codec}"
                ) from error
    return None


def _decode_legacy(data: bytes) -> str | None:
    raw = np.frombuffer(data, dtype=np.uint8)
    if np.count_nonzero(raw < 0x80) < _MIN_ASCII_RATIO_FOR_CP1252 * raw.size:
        return None
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        return None  # one of cp1252's five undefined bytes: not cp1252 text


_CONTROL_LUT = np.zeros(0x100, dtype=np.bool_)
_CONTROL_LUT[0x00:0x20] = True
_CONTROL_LUT[[0x09, 0x0A, 0x0B, 0x0C, 0x0D]] = False  # tab, line feeds, page breaks
_CONTROL_LUT[0x7F:0xA0] = True  # DEL and the C1 controls
_CONTROL_BYTES = bytes(np.flatnonzero(_CONTROL_LUT).astype(np.uint8).tolist())
_CHUNK_CHARS = 1 << 20


def _control_ratio(text: str) -> float:
    """Share of control characters, computed in chunks so that memory stays bounded."""
    controls = 0
    for begin in range(0, len(text), _CHUNK_CHARS):
        chunk = text[begin : begin + _CHUNK_CHARS]
        if chunk.isascii():
            # Deleting the control bytes is one C pass; the difference is their count.
            raw = chunk.encode("ascii")
            controls += len(raw) - len(raw.translate(None, _CONTROL_BYTES))
        else:
            wide = np.frombuffer(chunk.encode("utf-32-le"), dtype=np.uint32)
            small = wide[wide < 0x100]
            controls += int(np.count_nonzero(_CONTROL_LUT[small]))
    return controls / len(text)


# --------------------------------------------------------------------------------------------
# 2. markup


def strip_markup(text: str, kind: MarkupKind) -> str:
    """Blank out markup so that only the readable text remains, *keeping the length*.

    ``html``: parsed with the standard library's :class:`html.parser.HTMLParser`; tags,
    comments, declarations and the content of ``script``/``style``/``template`` become spaces;
    the first character of a block-level tag becomes a newline (so paragraphs do not run
    together); entities are unescaped and padded with soft hyphens, which :func:`normalise`
    drops inside words (``caf&eacute;`` → ``café`` + padding → ``café``).

    ``markdown``: code-fence lines, link and image URLs and titles, reference definitions,
    autolinks, bare URLs, inline HTML tags, heading/list/quote markers and emphasis characters
    become spaces; link texts and image alt texts stay. This is a line-oriented approximation
    of CommonMark, not a parser: it errs on the side of keeping text.

    ``plain``: returned unchanged.

    Because the result has the same length as ``text``, offsets that :func:`normalise` reports
    on it are offsets into the original markup.
    """
    if kind == "plain":
        return text
    if kind == "html":
        return _strip_html(text)
    if kind == "markdown":
        return _strip_markdown(text)
    raise ValueError(f"unknown markup kind {kind!r}")


_BLOCK_TAGS = frozenset(
    "address article aside blockquote body br dd details dialog div dl dt fieldset figcaption "
    "figure footer form h1 h2 h3 h4 h5 h6 head header hr html li main nav ol p pre section "
    "summary table tbody td tfoot th thead title tr ul".split()
)
_HIDDEN_TAGS = frozenset({"script", "style", "template", "noscript"})
_PAD = "\u00ad"  # soft hyphen: dropped inside words by normalise()


class _BlankingParser(HTMLParser):
    """Records, for each construct the parser reports, where it starts and what replaces it."""

    def __init__(self, line_starts: list[int]) -> None:
        # convert_charrefs=False: entities arrive as separate events, so every data event is
        # the raw text itself and its length is known.
        super().__init__(convert_charrefs=False)
        self._line_starts = line_starts
        self.events: list[tuple[int, str | None]] = []  # (offset, replacement or None=keep raw)
        self._hidden = 0

    def _offset(self) -> int:
        line, column = self.getpos()
        return self._line_starts[line - 1] + column

    def _blank(self, newline: bool = False) -> None:
        self.events.append((self._offset(), "\n" if newline else " "))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN_TAGS:
            self._hidden += 1
        self._blank(tag in _BLOCK_TAGS)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._blank(tag in _BLOCK_TAGS)

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN_TAGS and self._hidden:
            self._hidden -= 1
        self._blank(tag in _BLOCK_TAGS)

    def handle_data(self, data: str) -> None:
        self.events.append((self._offset(), " " if self._hidden else None))

    def handle_entityref(self, name: str) -> None:
        self._char(html.unescape(f"&{name};"))

    def handle_charref(self, name: str) -> None:
        self._char(html.unescape(f"&#{name};"))

    def _char(self, value: str) -> None:
        self.events.append((self._offset(), " " if self._hidden else value))

    def handle_comment(self, data: str) -> None:
        self._blank()

    def handle_decl(self, decl: str) -> None:
        self._blank()

    def handle_pi(self, data: str) -> None:
        self._blank()

    def unknown_decl(self, data: str) -> None:
        self._blank()


def _strip_html(text: str) -> str:
    line_starts = [0]
    line_starts.extend(match.end() for match in re.finditer("\n", text))
    parser = _BlankingParser(line_starts)
    parser.feed(text)
    parser.close()
    events = parser.events
    pieces: list[str] = []
    cursor = 0  # everything before cursor has been emitted
    for index, (start, replacement) in enumerate(events):
        end = events[index + 1][0] if index + 1 < len(events) else len(text)
        if end <= start:
            continue  # the parser reported a zero-width construct
        if start > cursor:
            pieces.append(text[cursor:start])  # not reported by the parser: keep as text
        if replacement is None:
            pieces.append(text[start:end])
        elif replacement in (" ", "\n"):
            # A tag keeps its line breaks so that the text's line structure survives.
            blank = re.sub(r"[^\n]", " ", text[start:end])
            pieces.append(replacement + blank[1:] if replacement == "\n" else blank)
        else:
            width = end - start
            value = replacement[:width]  # an entity is never shorter than its expansion
            pieces.append(value + _PAD * (width - len(value)))
        cursor = end
    pieces.append(text[cursor:])
    return "".join(pieces)


def _blank_match(match: re.Match[str]) -> str:
    return " " * len(match.group())


def _keep_group(group: int) -> Callable[[re.Match[str]], str]:
    """A replacement that keeps one group of the match and blanks the rest, same length."""

    def replace(match: re.Match[str]) -> str:
        begin, end = match.span(group)
        whole_begin = match.start()
        kept = match.group(group)
        before = " " * (begin - whole_begin)
        return before + kept + " " * (match.end() - end)

    return replace


# Bounded repetitions ({0,1000}) keep the worst case linear: a line of 10^8 "[" cannot make a
# pattern rescan the rest of the line for every bracket.
_MD_FENCE = re.compile(r"(?m)^[ \t]{0,3}(?:`{3,}|~{3,})[^\n]*$")
_MD_REFDEF = re.compile(r"(?m)^[ \t]{0,3}\[[^\]\n]{1,1000}\]:[ \t]*\S{1,4000}[^\n]*$")
_MD_LINK = re.compile(r"!?\[([^\]\n]{0,1000})\]\([^)\n]{0,4000}\)")
_MD_REFLINK = re.compile(r"!?\[([^\]\n]{0,1000})\]\[[^\]\n]{0,1000}\]")
_MD_AUTOLINK = re.compile(r"<(?:[a-zA-Z][a-zA-Z0-9+.-]{1,31}:|[^@>\s]{1,200}@)[^>\s]{0,4000}>")
_MD_HTML_TAG = re.compile(r"</?[a-zA-Z][a-zA-Z0-9-]{0,40}(?:\s[^<>\n]{0,1000})?/?>")
_MD_URL = re.compile(r"\b(?:https?|ftp)://[^\s<>()\[\]]{1,4000}")
_MD_LINE_MARKERS = re.compile(
    r"(?m)^[ \t]{0,3}(?:>[ \t]?)*(?:#{1,6}(?=[ \t]|$)|[-*+](?=[ \t])|\d{1,9}[.)](?=[ \t]))?"
)
_MD_EMPHASIS = re.compile(r"[*_`~]+|#+[ \t]*$", re.MULTILINE)


def _strip_markdown(text: str) -> str:
    text = _MD_FENCE.sub(_blank_match, text)
    text = _MD_REFDEF.sub(_blank_match, text)
    keep_text = _keep_group(1)
    text = _MD_LINK.sub(keep_text, text)
    text = _MD_REFLINK.sub(keep_text, text)
    text = _MD_AUTOLINK.sub(_blank_match, text)
    text = _MD_HTML_TAG.sub(_blank_match, text)
    text = _MD_URL.sub(_blank_match, text)
    text = _MD_LINE_MARKERS.sub(_blank_match, text)
    return _MD_EMPHASIS.sub(_blank_match, text)


# --------------------------------------------------------------------------------------------
# 3. normalisation


def normalise(text: str) -> NormalisedText:
    """Word tokens of ``text`` with their character spans (see the module docstring).

    Linear time: one regular-expression pass finds the tokens in the original text, and
    Unicode normalisation runs on batches of tokens joined by a separator; the text is
    processed in pieces of about 4 M characters. A 100 MB text on a single line is fine;
    memory is dominated by the token strings returned (use :func:`iter_token_batches` or
    :func:`iter_joined_tokens` to stream instead).
    """
    tokens: list[str] = []
    starts: list[npt.NDArray[np.int64]] = []
    ends: list[npt.NDArray[np.int64]] = []
    for joined, batch_starts, batch_ends in iter_token_batches(text):
        tokens.extend(joined.split(_SEP))
        starts.append(batch_starts)
        ends.append(batch_ends)
    empty = np.zeros(0, dtype=np.int64)
    return NormalisedText(
        tokens=tokens,
        starts=np.concatenate(starts) if starts else empty,
        ends=np.concatenate(ends) if ends else empty.copy(),
    )


def iter_token_batches(text: str) -> Iterator[_Batch]:
    """Stream normalised tokens in batches: ``(tokens joined by U+001F, starts, ends)``.

    Every batch holds at least one token, and the joined string holds exactly
    ``len(starts)`` non-empty tokens.
    """
    for offset, chunk in _chunks(text):
        if chunk.isascii():
            # Lower-casing keeps every offset and is case folding for ASCII.
            pattern, lowered, clean = _ASCII_TOKEN, chunk.lower(), _clean_ascii
        else:
            pattern, lowered, clean = _unicode_patterns()[0], chunk, _clean_unicode
        words: list[str] = []
        spans: list[int] = []
        for match in pattern.finditer(lowered):
            words.append(match.group())
            spans.extend(match.span())
        if words:
            joined, starts, ends = _finish_batch(words, spans, clean)
            if starts.size:
                yield joined, starts + offset, ends + offset


def iter_joined_tokens(text: str) -> Iterator[str]:
    """Like :func:`iter_token_batches` without the spans: only the joined token strings."""
    for loose in iter_joined_utf8(text):
        joined = b"\x1f".join(loose.split(b"\x1f")).decode("utf-8")
        joined = _SEP.join(part for part in joined.split(_SEP) if part)
        if joined:
            yield joined


def iter_joined_utf8(text: str) -> Iterator[bytes]:
    """The fingerprinting path: normalised tokens joined by U+001F, as UTF-8 bytes.

    The join is *loose*: a batch may start or end with U+001F or repeat it (empty tokens),
    which the consumer skips; every non-empty token is a token of :func:`normalise`, in order.

    Gives exactly the tokens of :func:`normalise` (tested) but is several times faster:

    * Pure-ASCII pieces are tokenised on bytes: lower-case, remove the glue between two word
      characters (apostrophes, hyphen + line break) with one regular expression, map every
      other non-alphanumeric byte to the separator with ``bytes.translate`` — all in C.
    * Typographic punctuation that only ever separates or glues words (curly quotes, dashes,
      no-break spaces, soft hyphens...) is first mapped one-for-one onto ASCII characters that
      play the same role in the grammar, so typical Western text stays on the ASCII path.
    * What is still not ASCII is cut at safe points into pieces of about 4 K characters;
      only the pieces that hold non-ASCII letters take the (ten times slower) Unicode path.
    """
    for _, chunk in _chunks(text):
        if chunk.isascii():
            joined = _ascii_joined(chunk.encode("ascii"))
            if joined:
                yield joined
            continue
        # Map typographic punctuation onto ASCII, run by run, in the UTF-8 bytes (offsets do
        # not matter on this path, only tokens).
        raw = _NON_ASCII_RUN.sub(_ascii_punctuation, chunk.encode("utf-8", "surrogatepass"))
        if raw.isascii():
            joined = _ascii_joined(raw)
            if joined:
                yield joined
            continue
        for piece in _pieces(raw.decode("utf-8", "surrogatepass")):
            if piece.isascii():
                joined = _ascii_joined(piece.encode("ascii"))
            else:
                joined = _unicode_joined(piece).encode("utf-8")
            if joined:
                yield joined


_NON_ASCII_RUN = re.compile(rb"[\x80-\xff]+")


@functools.lru_cache(maxsize=4096)
def _ascii_run(run: bytes) -> bytes:
    text = run.decode("utf-8", "surrogatepass")
    mapped = text.translate(_PUNCTUATION_TO_ASCII)
    return mapped.encode("ascii") if mapped.isascii() else run


def _ascii_punctuation(match: re.Match[bytes]) -> bytes:
    return _ascii_run(match.group())


def _unicode_joined(chunk: str) -> str:
    joined = _clean_unicode(_SEP.join(_unicode_patterns()[0].findall(chunk)))
    if _SEP + _SEP in joined or joined.startswith(_SEP) or joined.endswith(_SEP):
        joined = _SEP.join(part for part in joined.split(_SEP) if part)
    return joined


# A hyphen + line break glues the halves of a word (``exam-\nple``). Deleting every such
# sequence, even one that does not sit between two word characters, changes no token: it then
# only joins a separator to a word or to another separator. The literal first character lets
# the regex engine skip ahead instead of trying every position.
_ASCII_HYPHEN_BREAK = re.compile(rb"-[ \t]*(?:\r\n|[\n\r])[ \t]*")
# Every byte but [a-z0-9] becomes the token separator; runs of separators leave empty tokens,
# which the hashing drops (see ``split_loose``).
_ASCII_TO_SEP = bytes(c if (0x61 <= c <= 0x7A or 0x30 <= c <= 0x39) else 0x1F for c in range(256))


def _ascii_joined(raw: bytes) -> bytes:
    """Tokens of ASCII text, *loosely* joined: U+001F between tokens, possibly repeated."""
    raw = raw.lower()
    if b"-" in raw:
        raw = _ASCII_HYPHEN_BREAK.sub(b"", raw)
    # Apostrophes and backticks can always be deleted: between two word characters they are
    # glue, anywhere else they only separate a word from a separator.
    return raw.translate(_ASCII_TO_SEP, b"'`")


def _punctuation_table() -> dict[int, str]:
    """One-for-one replacements that keep every token and every offset unchanged.

    Apostrophes and the characters dropped inside words are all "glue" in the grammar, like
    the ASCII apostrophe; the line hyphens behave like ``-``; the Unicode line breaks like
    ``\n``; the rest are plain separators (``!`` is a separator that is neither whitespace
    nor glue, so it cannot create a hyphen + line-break join that was not there).
    """
    table: dict[int, str] = {}
    # Not U+00B4 (NFKC turns it into a space and a combining accent, which a token keeps)
    # nor U+02BC (a letter, so a word character in its own right).
    for char in _APOSTROPHES + _JOINERS:
        if char not in "\u00b4\u02bc":
            table[ord(char)] = "'"
    for char in "\u2010\u2011\u00ac":
        table[ord(char)] = "-"
    for char in "\u0085\u2028":
        table[ord(char)] = "\n"
    separators = (
        "\u00a0\u00a7\u00ab\u00b6\u00b7\u00bb\u00bf\u00a1\u00d7\u00f7"
        "\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000"
        "\u2012\u2013\u2014\u2015\u201a\u201c\u201d\u201e\u201f\u2020\u2021\u2022"
        "\u2026\u2029\u2039\u203a\u2212\u25cf\u25a0"
        "\u00a2\u00a3\u00a4\u00a5\u00a6\u00a9\u00ae\u00b0\u00b1\u20ac\u2122"
    )
    for char in separators:
        table[ord(char)] = "!"
    return table


_PUNCTUATION_TO_ASCII = _punctuation_table()
_PIECE_CHARS = 1 << 12


def _pieces(chunk: str) -> Iterator[str]:
    """Cut a chunk at safe points (see ``_SAFE_CUT``) into pieces of about 4 K characters."""
    begin = 0
    while len(chunk) - begin > _PIECE_CHARS * 2:
        found = _SAFE_CUT.search(chunk, begin + _PIECE_CHARS)
        if found is None:
            break
        cut = found.start() + 1
        yield chunk[begin:cut]
        begin = cut
    yield chunk[begin:]


# A chunk may end only between a word character and a whitespace character: no token can
# continue across that point (only a hyphen or an apostrophe can glue a word to what follows).
_SAFE_CUT = re.compile(r"[^\W_]\s")


def _chunks(text: str) -> Iterator[tuple[int, str]]:
    """Split ``text`` into pieces of about 4 M characters at points no token spans.

    Bounding the piece size bounds the memory of the per-piece token lists and arrays; a
    text without any safe point stays one piece (still linear).
    """
    begin = 0
    while len(text) - begin > _CHUNK_CHARS * 4:
        found = _SAFE_CUT.search(text, begin + _CHUNK_CHARS * 4)
        if found is None:
            break
        cut = found.start() + 1
        yield begin, text[begin:cut]
        begin = cut
    yield begin, text[begin:]


def _clean_ascii(joined: str) -> str:
    return joined.translate(_ASCII_JUNK)


def _clean_unicode(joined: str) -> str:
    if joined.isascii():
        return joined.lower().translate(_ASCII_JUNK)
    _, junk = _unicode_patterns()
    # NFKC and case folding act token by token: U+001F is a starter that composes with
    # nothing, and no token starts with a combining mark.
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", joined).casefold())
    # Removing junk can bring a letter and a mark together (``a`` + U+00B4 → ``a`` + space +
    # U+0301 → ``a`` + U+0301): compose once more so that the token is in its stable form.
    return unicodedata.normalize("NFC", junk.sub("", folded))


def _finish_batch(words: list[str], spans: list[int], clean: Callable[[str], str]) -> _Batch:
    joined = clean(_SEP.join(words))
    bounds = np.array(spans, dtype=np.int64).reshape(-1, 2)
    starts, ends = bounds[:, 0].copy(), bounds[:, 1].copy()
    if joined.startswith(_SEP) or joined.endswith(_SEP) or _SEP + _SEP in joined or not joined:
        # Normalisation left a token empty (a character whose compatibility form holds no word
        # character): drop it and its span so that tokens and spans stay aligned.
        parts = joined.split(_SEP)
        keep = np.fromiter((bool(part) for part in parts), dtype=np.bool_, count=len(parts))
        joined = _SEP.join(part for part in parts if part)
        starts, ends = starts[keep], ends[keep]
    return joined, starts, ends
