"""The text containment index (consentry.index.text): recall, evidence, storage, boilerplate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from consentry.fingerprint.base import Fingerprint
from consentry.fingerprint.text import (
    MINHASH_KIND,
    WINNOW_KIND,
    TextFingerprinter,
    encode_fingerprint,
    fingerprint_text,
)
from consentry.index import default_index_factories
from consentry.index.text import (
    BOILERPLATE,
    MAX_SEGMENTS,
    TextContainmentIndex,
    TextContainmentIndexFactory,
    _bloom_build,
    _bloom_test,
)

_SYLLABLES = "ka lo mi ne ru sa te vo da pi gre tho an el or us ba fen wil ost".split()
_RNG = np.random.default_rng(7)
_VOCABULARY = sorted({"".join(_RNG.choice(_SYLLABLES, _RNG.integers(1, 4))) for _ in range(4000)})
_WEIGHTS = 1.0 / np.arange(1, len(_VOCABULARY) + 1)
_WEIGHTS /= _WEIGHTS.sum()


def prose(words: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(_VOCABULARY), size=words, p=_WEIGHTS)
    out = [_VOCABULARY[i] + ("." if rng.random() < 0.07 else "") for i in chosen]
    return " ".join(out)


def typos(text: str, rate: float, seed: int) -> str:
    rng = np.random.default_rng(seed)
    chars = list(text)
    for index in np.flatnonzero(rng.random(len(chars)) < rate):
        if chars[index].isalpha():
            chars[index] = "xq"[int(rng.integers(2))]
    return "".join(chars)


def prints(text: str) -> list[Fingerprint]:
    return TextFingerprinter().fingerprint(text.encode(), "text")


WORKS = {f"W{n}": prose(3000, seed=n) for n in range(1, 6)}


def build(**kwargs: object) -> TextContainmentIndex:
    index = TextContainmentIndex(**kwargs)  # type: ignore[arg-type]
    for row, (work_id, text) in enumerate(WORKS.items(), start=1):
        index.add(work_id, prints(text), row)
    return index


def excerpt(work_id: str, start: int, words: int) -> str:
    return " ".join(WORKS[work_id].split(" ")[start : start + words])


def embed(passage: str, seed: int = 99) -> str:
    host = prose(1500, seed=seed).split(" ")
    return " ".join(host[:700]) + "\n\n" + passage + "\n\n" + " ".join(host[700:])


def test_the_registry_knows_the_text_index() -> None:
    assert any(f.name == "text-containment" for f in default_index_factories())


def test_an_excerpt_inside_an_unrelated_document_is_found_with_evidence() -> None:
    index = build()
    (match,) = index.match(prints(embed(excerpt("W3", 1000, 200))))
    assert (match.work_id, match.stage) == ("W3", "text")
    assert 0.0 < match.score < 1.0
    evidence = match.evidence
    assert 180 <= evidence["matched_words"] <= 200
    assert evidence["longest_run"] >= 150
    passage = evidence["passages"][0]
    work_start, work_end = passage["work_words"]
    doc_start, doc_end = passage["document_words"]
    assert 990 <= work_start
    assert work_end <= 1200
    # The excerpt sits after 700 host words.
    assert 690 <= doc_start
    assert doc_end <= 910
    assert evidence["work_words"] == 3000


def test_typos_and_reflowing_still_match() -> None:
    index = build()
    passage = typos(excerpt("W2", 500, 300), 0.02, seed=1).replace(" ", "\n", 40)
    (match,) = index.match(prints(embed(passage)))
    assert match.work_id == "W2"
    assert match.evidence["matched_words"] >= 100


def test_several_works_in_one_document_are_ranked_by_matched_words() -> None:
    index = build()
    document = embed(excerpt("W1", 0, 120) + "\n\n" + excerpt("W4", 2000, 400))
    assert [m.work_id for m in index.match(prints(document))] == ["W4", "W1"]


def test_unrelated_documents_and_short_quotes_match_nothing() -> None:
    index = build()
    assert index.match(prints(prose(5000, seed=1234))) == []
    # A quoted line of 25 words inside an unrelated text is below the attribution threshold.
    assert index.match(prints(embed(excerpt("W5", 100, 25)))) == []
    assert index.match(prints("Chapter 1\n\nAll rights reserved.")) == []


def test_boilerplate_shared_by_works_never_attributes() -> None:
    index = TextContainmentIndex()
    for row, seed in enumerate((11, 12), start=1):
        index.add(f"W{row}", prints(BOILERPLATE[0] + "\n\n" + prose(800, seed)), row)
    document = prose(400, seed=77) + "\n\n" + BOILERPLATE[0] + "\n\n" + prose(400, seed=78)
    assert index.match(prints(document)) == []


def test_save_load_is_memory_mapped_and_matches_the_same(tmp_path: Path) -> None:
    index = build()
    query = prints(embed(excerpt("W1", 200, 150)))
    before = index.match(query)
    index.save(tmp_path / "idx")
    loaded = TextContainmentIndexFactory().load(tmp_path / "idx")
    assert loaded.watermark == 5
    assert loaded.match(query) == before
    assert [m.evidence for m in loaded.match(query)] == [m.evidence for m in before]
    segment = loaded._segments[0]
    assert isinstance(segment.keys, np.memmap)
    # Incremental: a new work becomes a new segment; old matches are unchanged.
    loaded.add("W9", prints(prose(2000, seed=9)), 9)
    loaded.save(tmp_path / "idx")
    again = TextContainmentIndex.load(tmp_path / "idx")
    assert again.watermark == 9
    assert again.match(query) == before
    assert [
        m.work_id for m in again.match(prints(embed(" ".join(prose(2000, 9).split()[:90]))))
    ] == ["W9"]


def test_segments_are_merged_past_the_limit(tmp_path: Path) -> None:
    index = TextContainmentIndex()
    texts = {}
    for row in range(1, MAX_SEGMENTS + 4):
        texts[f"W{row}"] = prose(400, seed=100 + row)
        index.add(f"W{row}", prints(texts[f"W{row}"]), row)
        index.save(tmp_path / "idx")
        index = TextContainmentIndex.load(tmp_path / "idx")
    assert len(index._segments) <= MAX_SEGMENTS
    assert index.work_count == MAX_SEGMENTS + 3
    for work_id, text in texts.items():
        assert [m.work_id for m in index.match(prints(embed(text)))] == [work_id]


def test_replaying_a_registration_does_not_index_it_twice() -> None:
    index = build()
    size = len(index)
    index.add("W1", prints(WORKS["W1"]), 10)
    assert len(index) == size
    assert index.watermark == 10


def test_other_kinds_are_ignored_and_kinds_are_declared() -> None:
    index = TextContainmentIndex()
    assert index.kinds == frozenset({WINNOW_KIND})
    index.add("W1", [Fingerprint("sha256", "ab" * 32), Fingerprint(MINHASH_KIND, "AA==")], 3)
    assert (len(index), index.watermark) == (0, 3)
    assert index.match(prints(prose(200, seed=5))) == []


def test_bloom_filter_has_no_false_negatives_and_few_false_positives() -> None:
    rng = np.random.default_rng(3)
    keys = rng.integers(0, 1 << 32, 20_000, dtype=np.uint64).astype(np.uint32)
    bloom = _bloom_build(keys)
    assert _bloom_test(bloom, keys).all()
    others = rng.integers(0, 1 << 32, 200_000, dtype=np.uint64).astype(np.uint32)
    assert _bloom_test(bloom, others).mean() < 0.02


def test_a_fingerprint_with_another_k_is_refused() -> None:
    index = TextContainmentIndex()
    other = fingerprint_text(prose(100, seed=1), k=5)
    with pytest.raises(ValueError, match="k=5"):
        index.add("W1", [Fingerprint(WINNOW_KIND, encode_fingerprint(other))], 1)


def test_damaged_index_directory_is_a_clear_error(tmp_path: Path) -> None:
    from consentry.errors import UnreadableInputError

    build().save(tmp_path / "idx")
    (tmp_path / "idx" / "seg-0000" / "keys.npy").write_bytes(b"garbage")
    with pytest.raises(UnreadableInputError, match="damaged"):
        TextContainmentIndex.load(tmp_path / "idx")
