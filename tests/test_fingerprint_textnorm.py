"""Decoding, markup stripping and normalisation of text (consentry.fingerprint.textnorm)."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from consentry.errors import UnreadableInputError
from consentry.fingerprint.textnorm import (
    decode_text,
    iter_joined_tokens,
    iter_token_batches,
    normalise,
    strip_markup,
)


def tokens(text: str) -> list[str]:
    return normalise(text).tokens


# --- decoding ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"plain ascii", "plain ascii"),
        ("caf\u00e9".encode(), "caf\u00e9"),
        (b"\xef\xbb\xbf" + "caf\u00e9".encode(), "caf\u00e9"),
        (b"\xff\xfe" + "caf\u00e9".encode("utf-16-le"), "caf\u00e9"),
        (b"\xfe\xff" + "caf\u00e9".encode("utf-16-be"), "caf\u00e9"),
        (b"\xff\xfe\x00\x00" + "caf\u00e9".encode("utf-32-le"), "caf\u00e9"),
        (b"tab\tand\r\nlines\fpage", "tab\tand\r\nlines\fpage"),
    ],
)
def test_decode_text_accepts_text(data: bytes, expected: str) -> None:
    assert decode_text(data) == expected


def test_decode_text_falls_back_to_cp1252_for_mostly_ascii_text() -> None:
    sentence = "Les \u00e9l\u00e8ves \u2014 \u201cquoted\u201d and many more plain words here"
    data = sentence.encode("cp1252")
    assert decode_text(data) == data.decode("cp1252")


def test_decode_text_strict_mode_refuses_invalid_utf8() -> None:
    data = "caf\u00e9 au lait".encode("cp1252")
    with pytest.raises(UnreadableInputError, match="not valid UTF-8"):
        decode_text(data, legacy_fallback=False)


def test_decode_text_refuses_invalid_utf8_that_is_not_western_text() -> None:
    data = "\u65e5\u672c\u8a9e\u306e\u6587\u7ae0\u3067\u3059" * 10
    with pytest.raises(UnreadableInputError, match="not valid UTF-8"):
        decode_text(data.encode("shift_jis"))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"\x00" * 1024, "NUL"),
        (b"text with a \x00 inside", "NUL"),
        ("no bom".encode("utf-16-le"), "NUL"),
        (b"\xef\xbb\xbf", "empty"),
        (b"\xff\xfe\x00\xd8", "utf-16-le"),
        (b"\xff\xfe" + "a\x00b".encode("utf-16-le"), "NUL"),
        (bytes(range(1, 32)) * 20 + b"some text", "control"),
        (b"\x81\x8d\x8f" + b"x" * 100, "not valid UTF-8"),
    ],
)
def test_decode_text_refuses_binary_and_broken_input(data: bytes, message: str) -> None:
    with pytest.raises(UnreadableInputError, match=message):
        decode_text(data)


# --- normalisation ----------------------------------------------------------------------------


def test_nfkc_folds_ligatures_full_width_and_superscripts() -> None:
    assert tokens("\ufb01ne \uff26\uff35\uff2c\uff2c x\u00b2") == ["fine", "full", "x2"]


def test_case_folding() -> None:
    assert tokens("STRASSE Stra\u00dfe \u1e9e") == ["strasse", "strasse", "ss"]
    # Turkish dotted capital I folds to i + combining dot; the mark stays in the word.
    assert tokens("\u0130stanbul") == ["i\u0307stanbul"]
    assert tokens("\u0131") == ["\u0131"]  # dotless i is its own lower case


def test_combining_marks_stay_inside_words() -> None:
    decomposed = "cafe\u0301 \u0928\u092e\u0938\u094d\u0924\u0947"
    assert tokens(decomposed) == ["caf\u00e9", "\u0928\u092e\u0938\u094d\u0924\u0947"]


@pytest.mark.parametrize(
    "text",
    [
        "exam-\nple",
        "exam-\r\nple",
        "exam- \n   ple",
        "exam\u2010\nple",
        "exam\u00ac\nple",
        "exam\u00adple",
        "exam\u200bple",
        "EXAMPLE",
    ],
)
def test_hyphenation_and_invisible_characters_join_words(text: str) -> None:
    assert tokens(text) == ["example"]


def test_quotes_dashes_and_punctuation_unify() -> None:
    typeset = "\u201cDon\u2019t\u201d \u2014 she said\u2026 well\u2013known, (really)!"
    plain = '"don\'t" - she said... well-known (really)'
    assert tokens(typeset) == tokens(plain) == ["dont", "she", "said", "well", "known", "really"]


def test_whitespace_of_any_kind_collapses() -> None:
    assert tokens("  a\u00a0\u2003b\n\n\tc\u3000d  ") == ["a", "b", "c", "d"]


def test_underscore_and_digits() -> None:
    assert tokens("snake_case 1984 3.14") == ["snake", "case", "1984", "3", "14"]


def test_offsets_point_at_the_original_characters() -> None:
    text = "The \ufb01rst \u201cW\u00d6RD\u201d, exam-\nple."
    result = normalise(text)
    assert result.tokens == ["the", "first", "w\u00f6rd", "example"]
    assert [text[s:e] for s, e in zip(result.starts, result.ends, strict=True)] == [
        "The",
        "\ufb01rst",
        "W\u00d6RD",
        "exam-\nple",
    ]
    assert result.span(1, 3) == (4, text.index("\u201d"))


def test_empty_and_wordless_text() -> None:
    assert tokens("") == []
    assert tokens(" ... !!! \u2014 ") == []
    assert len(normalise("").starts) == 0


_TEXT_ALPHABET = st.sampled_from(
    [
        *"abcXYZ019 \n\t-'.,",
        "\u2019",
        "\u00df",
        "\u0130",
        "\ufb01",
        "\uff21",
        "\u0301",
        "\u00ad",
        "\u00bd",
        "\u00e9",
        "\u2010",
        "\u00ac",
        "\u200b",
        "\u3000",
        "\u0928",
        "\u094d",
        "_",
        "\u00b2",
        "\ufdfa",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_TEXT_ALPHABET, max_size=60).map("".join))
def test_every_token_renormalises_from_its_own_span(text: str) -> None:
    """Offsets invariant: normalise(text[start:end]).tokens == [token] for every token."""
    result = normalise(text)
    assert len(result.tokens) == len(result.starts) == len(result.ends)
    for token, start, end in zip(result.tokens, result.starts, result.ends, strict=True):
        assert token
        assert normalise(text[start:end]).tokens == [token]
    assert list(result.starts) == sorted(result.starts)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
@example("\u0e33")  # THAI SARA AM alone: NFKC puts a combining mark first
@example("x \u0e33\u0e33 y")
def test_normalise_is_idempotent_on_its_tokens(text: str) -> None:
    result = normalise(text)
    assert tokens(" ".join(result.tokens)) == result.tokens


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_streaming_paths_agree_with_normalise(text: str) -> None:
    joined = "\x1f".join(normalise(text).tokens)
    assert "\x1f".join(iter_joined_tokens(text)) == joined
    assert "\x1f".join(b for b, _, _ in iter_token_batches(text)) == joined


def test_large_single_line_is_chunked_consistently() -> None:
    line = ("Some w\u00f6rds, exam-\nple; " * 250_000).replace("\n", " ")
    result = normalise(line)  # about 5.3 M characters: crosses the 4 M chunk size
    assert len(result.tokens) == 1_000_000
    assert result.tokens[:4] == ["some", "w\u00f6rds", "exam", "ple"]
    assert "\x1f".join(iter_joined_tokens(line)) == "\x1f".join(result.tokens)
    last = len(result.tokens) - 1
    assert line[result.starts[last] : result.ends[last]] == "ple"


# --- markup -----------------------------------------------------------------------------------


def test_strip_html_drops_script_style_and_unescapes_entities() -> None:
    page = (
        "<!DOCTYPE html><html><head><style>p { color: red }</style>"
        "<script>var hidden = 'secret words';</script></head>"
        "<body><p>Caf&eacute; &amp; cr&#232;me</p><!-- a comment --><p>second"
        "<br>line</p><div>block</div>inline<b>bold</b>text</body></html>"
    )
    stripped = strip_markup(page, "html")
    assert len(stripped) == len(page)
    assert tokens(stripped) == [
        "caf\u00e9",
        "cr\u00e8me",
        "second",
        "line",
        "block",
        "inline",
        "bold",
        "text",
    ]
    assert "\n" in stripped[stripped.index("second") :]


def test_strip_html_offsets_point_into_the_markup() -> None:
    page = "<p>Na&iuml;ve <em>art</em></p>"
    result = normalise(strip_markup(page, "html"))
    assert result.tokens == ["na\u00efve", "art"]
    assert page[result.starts[0] : result.ends[0]] == "Na&iuml;ve"
    assert page[result.starts[1] : result.ends[1]] == "art"


def test_strip_html_keeps_block_boundaries() -> None:
    assert tokens(strip_markup("<p>end</p><p>start</p>", "html")) == ["end", "start"]


def test_strip_markdown() -> None:
    document = (
        "# The Title #\n\n"
        'Some **bold** and _italic_ and `code` with [a link](https://example.com/page "t").\n'
        "![the alt](images/pic.png) and <https://auto.link/x> and https://bare.url/y\n\n"
        "```python\nprint(words)\n```\n"
        "- item one\n* item two\n1. item three\n> quoted line\n"
        "[ref]: https://example.org/ref\n"
    )
    stripped = strip_markup(document, "markdown")
    assert len(stripped) == len(document)
    assert (
        tokens(stripped)
        == (
            "the title some bold and italic and code with a link the alt and and "
            "print words item one item two item three quoted line"
        ).split()
    )


def test_strip_markup_plain_is_identity_and_unknown_kind_fails() -> None:
    assert strip_markup("<b>x</b>", "plain") == "<b>x</b>"
    with pytest.raises(ValueError, match="unknown markup kind"):
        strip_markup("x", "rtf")  # type: ignore[arg-type]


def test_strip_markdown_is_linear_on_pathological_brackets() -> None:
    line = "[" * 20_000 + "](" * 10_000 + "<" * 20_000
    assert len(strip_markup(line, "markdown")) == len(line)
