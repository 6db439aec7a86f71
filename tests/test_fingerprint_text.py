"""Containment fingerprints for writing (consentry.fingerprint.text)."""

from __future__ import annotations

import pickle

import datasketch
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consentry.errors import UnreadableInputError
from consentry.fingerprint import fingerprint_all
from consentry.fingerprint import text as text_module
from consentry.fingerprint.base import Fingerprint, Fingerprinter
from consentry.fingerprint.text import (
    DEFAULT_K,
    DEFAULT_WINDOW,
    MINHASH_KIND,
    WINNOW_KIND,
    StopHashes,
    TextFingerprint,
    TextFingerprinter,
    _fingerprint_tokens,
    _hash_joined,
    _token_batches,
    containment,
    decode_fingerprint,
    decode_minhash,
    encode_fingerprint,
    encode_minhash,
    fingerprint_text,
    is_attribution,
    kgram_hashes,
    minhash_signature,
    minhash_similarity,
    required_words,
    token_hashes,
    winnow,
    winnowed_of,
)
from consentry.fingerprint.textnorm import normalise

# --- a small synthetic corpus -----------------------------------------------------------------
# Pseudo-English made of invented words with a Zipf-like frequency, so that common words
# repeat as in real prose and two unrelated texts share plenty of single words and bigrams.

_SYLLABLES = "ka lo mi ne ru sa te vo da pi gre tho an el or us ba fen wil ost".split()
_GENERATOR = np.random.default_rng(20240601)
_VOCABULARY = sorted(
    {"".join(_GENERATOR.choice(_SYLLABLES, _GENERATOR.integers(1, 4))) for _ in range(4000)}
)
_WEIGHTS = 1.0 / np.arange(1, len(_VOCABULARY) + 1)
_WEIGHTS /= _WEIGHTS.sum()


def prose(words: int, seed: int) -> str:
    """Sentences of invented words: capitals, commas, full stops, paragraphs."""
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(_VOCABULARY), size=words, p=_WEIGHTS)
    out: list[str] = []
    for index, word_index in enumerate(chosen):
        word = _VOCABULARY[word_index]
        if index == 0 or out[-1].endswith((".", "\n\n")):
            word = word.capitalize()
        out.append(word)
        roll = rng.random()
        if roll < 0.07:
            out[-1] += "."
        elif roll < 0.12:
            out[-1] += ","
        if roll < 0.01:
            out[-1] += "\n\n"
    return " ".join(out)


WORK = prose(3000, seed=1)
UNRELATED = prose(2000, seed=2)
WORK_WORDS = WORK.split(" ")


def embed(excerpt: str, host: str = UNRELATED) -> str:
    middle = len(host) // 2
    cut = host.index(" ", middle)
    return host[:cut] + "\n\n" + excerpt + "\n\n" + host[cut:]


def typos(text: str, rate: float, seed: int) -> str:
    """Character substitutions, deletions and insertions at ``rate`` of the letters."""
    rng = np.random.default_rng(seed)
    chars = list(text)
    out: list[str] = []
    for char in chars:
        if char.isalpha() and rng.random() < rate:
            kind = rng.integers(3)
            if kind == 0:
                out.append(chr(ord("a") + int(rng.integers(26))))
            elif kind == 1:
                continue
            else:
                out.extend([char, chr(ord("a") + int(rng.integers(26)))])
        else:
            out.append(char)
    return "".join(out)


@pytest.fixture(scope="module")
def work_fp() -> TextFingerprint:
    return fingerprint_text(WORK)


# --- hashing and winnowing --------------------------------------------------------------------


def test_token_hashes_are_deterministic_and_normalisation_invariant() -> None:
    first = token_hashes("The \ufb01rst WORD, exam-\nple")
    second = token_hashes("the first word example")
    assert first.dtype == np.uint64
    assert np.array_equal(first, second)
    assert len(set(first.tolist())) == 4
    # Pinned values: fingerprints made on one machine must match on every other.
    assert token_hashes("a").tolist() == token_hashes("A").tolist()
    assert token_hashes("ab ba")[0] != token_hashes("ab ba")[1]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.binary(max_size=12).map(lambda b: b.replace(b"\x1f", b"")), st.integers(1, 3))
    )
)
def test_loosely_joined_tokens_hash_like_tokens_alone(parts: list[tuple[bytes, int]]) -> None:
    # Runs of separators (a loose join) and empty tokens contribute nothing; every token
    # hashes as it would alone.
    joined = b"".join(token + b"\x1f" * gap for token, gap in parts)
    tokens = [token for token, _ in parts if token]
    alone = [int(_hash_joined(token)[0]) for token in tokens]
    assert _hash_joined(b"\x1f" + joined).tolist() == alone


def test_token_hash_is_independent_of_batch_position() -> None:
    alone = token_hashes("needle")[0]
    inside = token_hashes("hay " * 1000 + "needle")[-1]
    assert alone == inside


def test_fingerprint_in_batches_equals_the_one_shot_computation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Non-ASCII letters: normalisation hands over pieces of about 4 K characters, which
    # fingerprinting gathers into batches; one batch or several, the result is the same.
    text = prose(30_000, seed=11).replace("ka", "k\u00e1")
    one_shot = _fingerprint_tokens(
        token_hashes(text), k=DEFAULT_K, window=DEFAULT_WINDOW, stop=None
    )
    assert len(list(_token_batches(text))) == 1
    assert fingerprint_text(text) == one_shot
    monkeypatch.setattr(text_module, "_BATCH_TOKENS", 1000)
    assert len(list(_token_batches(text))) > 5
    assert fingerprint_text(text) == one_shot


def test_kgram_hashes_roll_over_words() -> None:
    tokens = token_hashes("a b c d e f g h")
    grams = kgram_hashes(tokens, 6)
    assert grams.size == 3
    assert np.array_equal(kgram_hashes(token_hashes("x a b c d e f y"), 6)[1], grams[0])
    short = kgram_hashes(token_hashes("all rights reserved"), 6)
    assert short.size == 1
    assert kgram_hashes(np.zeros(0, dtype=np.uint64)).size == 0
    with pytest.raises(ValueError, match="k must"):
        kgram_hashes(tokens, 0)


def _reference_winnow(hashes: list[int], window: int) -> list[int]:
    """Straight from Schleimer et al. 2003, section 4.2 (robust winnowing), one window at a time."""
    if not hashes:
        return []
    width = min(window, len(hashes))
    selected: list[int] = []
    previous = -1
    for start in range(len(hashes) - width + 1):
        values = hashes[start : start + width]
        minimum = min(values)
        if previous >= start and hashes[previous] == minimum:
            choice = previous
        else:
            choice = start + max(i for i, v in enumerate(values) if v == minimum)
        if choice != previous:
            selected.append(choice)
        previous = choice
    return selected


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=6), max_size=60),
    st.integers(min_value=1, max_value=10),
)
def test_winnow_matches_the_reference_algorithm(values: list[int], window: int) -> None:
    # Small values force many ties, the case the vectorised code handles separately.
    hashes = np.array(values, dtype=np.uint64)
    assert winnow(hashes, window).tolist() == _reference_winnow(values, window)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=2**64 - 1), min_size=1, max_size=40),
    st.lists(st.integers(min_value=0, max_value=39), max_size=6),
    st.integers(min_value=1, max_value=12),
)
def test_winnow_with_distinct_and_some_repeated_hashes_matches_the_reference(
    values: list[int], repeats: list[int], window: int
) -> None:
    # Mostly distinct 64-bit values (the fast path) with a few values copied elsewhere: a
    # copy near the original can tie a window, one far away cannot; both must be exact.
    values = list(values)
    for target in repeats:
        values.insert(target % (len(values) + 1), values[target % len(values)])
    hashes = np.array(values, dtype=np.uint64)
    assert winnow(hashes, window).tolist() == _reference_winnow(values, window)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=2**64 - 1), min_size=1, max_size=300))
def test_winnow_guarantee_every_window_has_a_selection(values: list[int]) -> None:
    window = 8
    hashes = np.array(values, dtype=np.uint64)
    chosen = set(winnow(hashes, window).tolist())
    for start in range(max(1, len(values) - window + 1)):
        assert chosen & set(range(start, start + window))


def test_robust_winnowing_keeps_density_low_on_repetition() -> None:
    repeated = fingerprint_text("la " * 1000)
    assert len(repeated) <= 1000 / 8 + 2
    with pytest.raises(ValueError, match="window"):
        winnow(np.zeros(3, dtype=np.uint64), 0)


def test_fingerprint_density_is_about_two_over_w_plus_one(work_fp: TextFingerprint) -> None:
    density = len(work_fp) / work_fp.word_count
    assert 0.17 < density < 0.27
    assert work_fp.word_count == len(normalise(WORK))
    assert np.all(np.diff(work_fp.positions) > 0)


# --- containment ------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [50, 200])
@pytest.mark.parametrize("query_window", [8, 1])
def test_excerpt_in_unrelated_document_is_detected(
    work_fp: TextFingerprint, length: int, query_window: int
) -> None:
    start = 1234
    excerpt = " ".join(WORK_WORDS[start : start + length])
    document = embed(excerpt)
    score = containment(fingerprint_text(document, window=query_window), work_fp)
    assert score.matched_words >= 0.8 * length
    assert score.longest_run >= 0.8 * length
    assert is_attribution(score)
    best = score.runs[0]
    excerpt_tokens = len(normalise(excerpt))
    assert start - 2 <= best.work_start <= start + length
    assert best.work_end <= start + excerpt_tokens + 1
    # The evidence points at the excerpt inside the document.
    document_text = normalise(document)
    begin, end = document_text.span(best.query_start, best.query_end)
    assert document[begin:end] in excerpt
    assert len(score.work_positions) == len(score.query_positions) == score.matched_fingerprints


@pytest.mark.parametrize(("rate", "minimum_share"), [(0.01, 0.75), (0.03, 0.5)])
def test_typos_still_detected(work_fp: TextFingerprint, rate: float, minimum_share: float) -> None:
    length = 200
    excerpt = typos(" ".join(WORK_WORDS[500 : 500 + length]), rate, seed=7)
    score = containment(fingerprint_text(embed(excerpt), window=1), work_fp)
    assert score.matched_words >= minimum_share * length
    assert is_attribution(score)


def test_paragraph_reordering_still_detected(work_fp: TextFingerprint) -> None:
    paragraphs = [" ".join(WORK_WORDS[at : at + 60]) for at in range(2000, 2240, 60)]
    document = embed("\n\n".join(reversed(paragraphs)))
    score = containment(fingerprint_text(document), work_fp)
    assert score.matched_words >= 0.8 * 240
    assert len(score.runs) >= 4
    assert is_attribution(score)


def test_html_wrapped_excerpt_is_detected(work_fp: TextFingerprint) -> None:
    words = WORK_WORDS[100:300]
    page = (
        "<!DOCTYPE html><html><body><script>var x = 1;</script><p>"
        + " ".join(words[:100])
        + "</p>\n<p>"
        + " ".join(words[100:]).replace(" ", " <em>", 1).replace(" ", "</em> ", 2)
        + "</p></body></html>"
    )
    query, _ = TextFingerprinter().analyse(page.encode(), "text")
    score = containment(query, work_fp)
    assert score.matched_words >= 0.8 * 200
    assert is_attribution(score)


def test_unrelated_document_scores_about_zero(work_fp: TextFingerprint) -> None:
    score = containment(fingerprint_text(UNRELATED, window=1), work_fp)
    assert score.fraction < 0.01
    assert score.matched_words <= 2 * DEFAULT_K
    assert not is_attribution(score)


SONNET = (
    "Shall I compare thee to a summer's day? Thou art more lovely and more temperate: "
    "Rough winds do shake the darling buds of May, And summer's lease hath all too short a date."
)
BOILERPLATE = (
    "All rights reserved. No part of this publication may be reproduced, stored in a retrieval "
    "system, or transmitted, in any form or by any means, without the prior permission in "
    "writing of the publisher."
)


def test_common_phrases_do_not_reach_attribution() -> None:
    work = "Chapter 1\n\n" + SONNET + "\n\n" + WORK[:3000] + "\n\nAll rights reserved."
    work_fp = fingerprint_text(work)
    quoting = embed("As the poet wrote, shall I compare thee to a summer's day? Indeed.")
    for document in (quoting, embed("Chapter 1"), embed("All rights reserved."), UNRELATED):
        score = containment(fingerprint_text(document, window=1), work_fp)
        assert not is_attribution(score), document[:60]
    # Even the whole first quatrain-half (30 words) stays below the 40-word threshold.
    score = containment(fingerprint_text(embed(SONNET), window=1), work_fp)
    assert score.longest_run >= 12
    assert not is_attribution(score)


@pytest.mark.parametrize(
    ("work_words", "needed"),
    [(5, 12), (12, 12), (24, 12), (25, 13), (30, 15), (50, 25), (79, 40), (80, 40), (10**6, 40)],
)
def test_short_works_need_a_share_of_their_words(work_words: int, needed: int) -> None:
    assert required_words(work_words) == needed
    assert required_words(work_words, short_work_share=0) == 40


def test_a_whole_short_poem_in_a_document_is_an_attribution() -> None:
    poem = " ".join(WORK_WORDS[:30])
    score = containment(fingerprint_text(embed(poem), window=1), fingerprint_text(poem))
    assert score.work_word_count == 30
    assert 15 <= score.matched_words < 40
    assert is_attribution(score)
    assert not is_attribution(score, short_work_share=0)  # the rule for long works alone
    # Ten words of it (a quoted line) are not.
    line = containment(
        fingerprint_text(embed(" ".join(WORK_WORDS[:10])), window=1), fingerprint_text(poem)
    )
    assert not is_attribution(line)


def test_stop_hashes_make_boilerplate_never_count() -> None:
    stop = StopHashes.from_texts([BOILERPLATE])
    assert len(stop) > 0
    work = BOILERPLATE + "\n\n" + WORK[:2000]
    document = embed(BOILERPLATE + " " + BOILERPLATE)
    without = containment(fingerprint_text(document), fingerprint_text(work))
    assert without.matched_words >= 25
    # Applied at comparison time (stop list newer than the registration) ...
    later = containment(fingerprint_text(document), fingerprint_text(work), stop=stop)
    assert later.matched_words == 0
    # ... or at fingerprinting time.
    work_fp = fingerprint_text(work, stop=stop)
    assert not np.any(stop.mask(work_fp.hashes))
    assert containment(fingerprint_text(document, stop=stop), work_fp).matched_words == 0
    some_hash = int(kgram_hashes(token_hashes(BOILERPLATE))[0])
    assert some_hash in stop
    assert "text" not in stop
    assert len(stop.union(StopHashes.from_texts(["Chapter one of the book begins"]))) > len(stop)


def test_containment_rejects_mismatched_parameters(work_fp: TextFingerprint) -> None:
    with pytest.raises(ValueError, match="different k"):
        containment(fingerprint_text("a b c d e f g", k=5), work_fp)
    with pytest.raises(ValueError, match="stop hashes were built"):
        fingerprint_text("a b c", stop=StopHashes.from_texts(["a b c"], k=5))
    with pytest.raises(ValueError, match="k=6 and k=5"):
        StopHashes.from_texts(["x"]).union(StopHashes.from_texts(["x"], k=5))


def test_empty_work_scores_zero() -> None:
    empty = fingerprint_text("")
    assert empty.word_count == 0
    score = containment(fingerprint_text(WORK), empty)
    assert (score.fraction, score.matched_words, score.longest_run) == (0.0, 0, 0)
    assert score.runs == ()


# --- MinHash ----------------------------------------------------------------------------------


def test_minhash_detects_near_duplicates() -> None:
    fingerprinter = TextFingerprinter()
    _, original = fingerprinter.analyse(WORK.encode(), "text")
    _, retyped = fingerprinter.analyse(typos(WORK, 0.002, seed=3).upper().encode(), "text")
    _, other = fingerprinter.analyse(UNRELATED.encode(), "text")
    assert minhash_similarity(original, retyped) > 0.6
    assert minhash_similarity(original, other) < 0.05
    assert minhash_similarity(original, original) == 1.0
    with pytest.raises(ValueError, match="different lengths"):
        minhash_similarity(original, original[:64])


def test_minhash_equals_datasketch_affine64() -> None:
    values = np.unique(kgram_hashes(token_hashes(WORK[:5000])))
    reference = datasketch.MinHash(num_perm=128, seed=1, scheme="affine64", hashfunc=int)
    reference.update_batch(values.tolist())
    assert np.array_equal(minhash_signature(values), reference.digest())


def test_minhash_of_nothing_is_empty() -> None:
    signature = minhash_signature(np.zeros(0, dtype=np.uint64))
    assert minhash_similarity(signature, signature) == 0.0


# --- the fingerprinter and serialisation ------------------------------------------------------


def test_fingerprinter_protocol_and_output() -> None:
    fingerprinter = TextFingerprinter()
    assert isinstance(fingerprinter, Fingerprinter)
    assert fingerprinter.name == "text-winnow"
    assert fingerprinter.applies_to("text")
    assert fingerprinter.applies_to("text/html; charset=utf-8")
    assert not fingerprinter.applies_to("image")
    result = fingerprinter.fingerprint(WORK.encode(), "text")
    assert [fp.kind for fp in result] == [WINNOW_KIND, MINHASH_KIND]
    assert all(fp.region == "full" for fp in result)
    assert decode_fingerprint(result[0].value) == fingerprint_text(WORK)
    assert decode_minhash(result[1].value).size == 128
    # Deterministic: same bytes, same fingerprints.
    assert fingerprinter.fingerprint(WORK.encode(), "text") == result


def test_query_fingerprint_is_the_winnowed_fingerprint_alone() -> None:
    fingerprinter = TextFingerprinter()
    full = fingerprinter.fingerprint(WORK.encode(), "text")
    query = fingerprinter.query_fingerprint(WORK.encode(), "text")
    assert [fp.kind for fp in query] == [WINNOW_KIND]
    assert query[0] == full[0]
    with pytest.raises(UnreadableInputError):
        fingerprinter.query_fingerprint(b"\x00" * 64, "text")


def test_fingerprint_all_asks_for_query_fingerprints_when_recognising() -> None:
    fingerprinters: list[Fingerprinter] = [TextFingerprinter()]
    registering = fingerprint_all(WORK.encode(), "text", fingerprinters)
    recognising = fingerprint_all(WORK.encode(), "text", fingerprinters, query=True)
    assert [fp.kind for fp in registering] == [WINNOW_KIND, MINHASH_KIND]
    assert recognising == registering[:1]


def test_the_index_reads_a_fresh_fingerprint_without_decoding_it_and_read_only() -> None:
    made = TextFingerprinter().query_fingerprint(WORK.encode(), "text")[0]
    arrays = winnowed_of(made)
    assert arrays is winnowed_of(made)  # the arrays it was made from: nothing decoded
    assert not arrays.hashes.flags.writeable
    assert not arrays.positions.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        arrays.hashes[0] = 0
    # A plain fingerprint with the same value (read back from a registry) is decoded and
    # checked from its text, and is the same fingerprint.
    stored = Fingerprint(made.kind, made.value, made.region)
    decoded = winnowed_of(stored)
    assert decoded is not arrays
    assert decoded == arrays == fingerprint_text(WORK)
    assert decoded.hashes.flags.writeable
    assert stored == made
    # Crossing a process boundary, it becomes that plain fingerprint.
    assert type(pickle.loads(pickle.dumps(made))) is Fingerprint  # noqa: S301 - our own bytes


def test_markup_media_types_are_stripped() -> None:
    fingerprinter = TextFingerprinter()
    body = " ".join(WORK_WORDS[:100])
    plain = fingerprinter.fingerprint(body.encode(), "text")
    html = fingerprinter.fingerprint(f"<p>{body}</p><script>x()</script>".encode(), "text/html")
    markdown = fingerprinter.fingerprint(f"# {body} [x](http://u.rl)".encode(), "text/markdown")
    sniffed = fingerprinter.fingerprint(f"<!doctype html><p>{body}</p>".encode(), "text")
    assert plain[0] == html[0] == sniffed[0]
    assert decode_fingerprint(markdown[0].value).word_count == 101


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00" * 4096, b"not utf8 \x81\x8d\x90", b"   ... !!! ---   ", b"\x89PNG\r\n\x1a\n\x00"],
)
def test_fingerprinter_refuses_bad_input(data: bytes) -> None:
    with pytest.raises(UnreadableInputError):
        TextFingerprinter().fingerprint(data, "text")


def test_fingerprinter_handles_a_20_mb_single_line() -> None:
    words = np.array(_VOCABULARY)[np.random.default_rng(5).integers(0, len(_VOCABULARY), 3_600_000)]
    line = " ".join(words.tolist())
    assert len(line) > 20_000_000
    assert "\n" not in line
    winnowed, signature = TextFingerprinter().analyse(line.encode(), "text")
    assert winnowed.word_count == 3_600_000
    assert 0.17 < len(winnowed) / winnowed.word_count < 0.27
    assert signature.size == 128


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=300), st.integers(min_value=1, max_value=12))
def test_fingerprint_serialisation_round_trip(text: str, window: int) -> None:
    fingerprint = fingerprint_text(text, window=window)
    assert decode_fingerprint(encode_fingerprint(fingerprint)) == fingerprint
    signature = minhash_signature(fingerprint.hashes)
    assert np.array_equal(decode_minhash(encode_minhash(signature)), signature)


@pytest.mark.parametrize(
    "value",
    [
        "not base64!",
        "",
        "AQYI",  # truncated header
        encode_fingerprint(fingerprint_text(WORK[:500]))[:-8],  # truncated body
        encode_fingerprint(
            TextFingerprint(np.array([1, 2], dtype=np.uint64), np.array([5, 3], dtype=np.int64), 10)
        ),  # positions not increasing
    ],
)
def test_decode_fingerprint_refuses_malformed_values(value: str) -> None:
    with pytest.raises(UnreadableInputError):
        decode_fingerprint(value)


def test_decode_minhash_refuses_malformed_values() -> None:
    with pytest.raises(UnreadableInputError):
        decode_minhash("AAAA")
    with pytest.raises(UnreadableInputError):
        decode_minhash("???")


def test_stop_mask_agrees_with_set_membership_including_shared_prefixes() -> None:
    rng = np.random.default_rng(11)
    stop_values = rng.integers(0, 2**64, 300, dtype=np.uint64)
    # Hashes sharing a stop hash's top 16 bits pass the prefix table and must still be
    # told apart by the exact search.
    near = stop_values[:50] ^ np.uint64(1)
    others = rng.integers(0, 2**64, 5000, dtype=np.uint64)
    queries = np.concatenate([stop_values[::3], near, others])
    stop = StopHashes(stop_values)
    assert stop.mask(queries).tolist() == np.isin(queries, stop_values).tolist()
    assert not StopHashes().mask(queries).any()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=60), st.integers(1, 9))
def test_winnowing_fast_path_equals_the_tie_rule_path(values: list[int], window: int) -> None:
    # Small value ranges force tied minima (the slow path); distinct values take the fast
    # path. Both must agree with a direct reading of robust winnowing.
    hashes = np.array(values, dtype=np.uint64)
    chosen: list[int] = []
    width = min(window, len(values))
    for start in range(len(values) - width + 1):
        block = values[start : start + width]
        low = min(block)
        previous = chosen[-1] if chosen else -1
        if previous >= start and values[previous] == low:
            pick = previous
        else:
            pick = start + max(i for i, v in enumerate(block) if v == low)
        if not chosen or chosen[-1] != pick:
            chosen.append(pick)
    assert winnow(hashes, window).tolist() == sorted(set(chosen))
