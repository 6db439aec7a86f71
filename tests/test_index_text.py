"""The text containment index (consentry.index.text): recall, evidence, storage, boilerplate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from consentry.fingerprint.base import Fingerprint
from consentry.fingerprint.text import (
    MINHASH_KIND,
    WINNOW_KIND,
    TextFingerprint,
    TextFingerprinter,
    decode_fingerprint,
    encode_fingerprint,
    fingerprint_text,
)
from consentry.index import default_index_factories
from consentry.index.text import (
    BOILERPLATE,
    MAX_SEGMENTS,
    TextContainmentIndex,
    TextContainmentIndexFactory,
    seed_mask,
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


def decode_fp(fingerprints: list[Fingerprint]) -> TextFingerprint:
    (winnowed,) = [p for p in fingerprints if p.kind == WINNOW_KIND]
    return decode_fingerprint(winnowed.value)


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


POEM_WORDS = 30


def short_work_index(**kwargs: object) -> TextContainmentIndex:
    """The five long works and a 30-word poem (too short for 40 matched words)."""
    index = build(**kwargs)
    index.add("POEM", prints(prose(POEM_WORDS, seed=501)), 6)
    return index


def test_a_short_work_is_attributed_when_a_document_holds_most_of_it() -> None:
    index = short_work_index()
    poem = prose(POEM_WORDS, seed=501)
    found = index.match(prints(embed(poem)))
    assert [m.work_id for m in found] == ["POEM"]
    evidence = found[0].evidence
    assert evidence["work_words"] == POEM_WORDS
    assert 15 <= int(evidence["matched_words"]) <= POEM_WORDS  # half of the poem or more
    assert int(evidence["longest_run"]) >= 12
    # Its first line (10 words) is not enough: no passage of 12 words, 33 % of the work.
    first_line = " ".join(poem.split(" ")[:10])
    assert index.match(prints(embed(first_line))) == []
    # The same 25 words that attribute the 30-word poem do not attribute a long work.
    assert index.match(prints(embed(excerpt("W5", 100, 25)))) == []


def test_the_short_work_share_is_kept_on_disk_and_zero_turns_it_off(tmp_path: Path) -> None:
    poem = embed(prose(POEM_WORDS, seed=501))
    assert short_work_index(short_work_share=0.0).match(prints(poem)) == []
    index = short_work_index(short_work_share=0.9)
    index.save(tmp_path / "idx")
    meta = json.loads((tmp_path / "idx" / "meta.json").read_text())
    assert meta["short_work_share"] == 0.9
    assert TextContainmentIndexFactory().load(tmp_path / "idx").short_work_share == 0.9
    # An index saved before the rule existed gets the default share when it is loaded.
    del meta["short_work_share"]
    (tmp_path / "idx" / "meta.json").write_text(json.dumps(meta))
    loaded = TextContainmentIndexFactory().load(tmp_path / "idx")
    assert loaded.short_work_share == TextContainmentIndex().short_work_share == 0.5
    assert [m.work_id for m in loaded.match(prints(poem))] == ["POEM"]


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
    # Views of the file mappings, not copies.
    assert isinstance(segment.entries.base, np.memmap)
    assert isinstance(segment.hash8.base, np.memmap)
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


def test_seeds_are_exactly_what_the_wide_window_would_winnow() -> None:
    from consentry.fingerprint.text import kgram_hashes, token_hashes, winnow

    text = prose(3000, seed=21)
    grams = kgram_hashes(token_hashes(text))
    keys = (grams >> np.uint64(32)).astype(np.uint32)
    narrow = winnow(keys.astype(np.uint64), 8)
    wide = winnow(keys.astype(np.uint64), 32)
    mask = seed_mask(keys[narrow], narrow, len(token_hashes(text)), k=6, window=32)
    assert set(narrow[mask].tolist()) == set(wide.tolist())
    assert 0.2 < mask.mean() < 0.35


def test_seeds_of_texts_shorter_than_the_window() -> None:
    keys = np.array([9, 4, 7], dtype=np.uint32)
    mask = seed_mask(keys, np.array([0, 3, 5]), 12, k=6, window=32)
    assert mask.tolist() == [False, True, False]
    assert seed_mask(keys[:1], np.array([0]), 3, k=6, window=32).tolist() == [True]


def test_a_fingerprint_with_another_k_is_refused() -> None:
    index = TextContainmentIndex()
    other = fingerprint_text(prose(100, seed=1), k=5)
    with pytest.raises(ValueError, match="k=5"):
        index.add("W1", [Fingerprint(WINNOW_KIND, encode_fingerprint(other))], 1)


def test_damaged_index_directory_is_a_clear_error(tmp_path: Path) -> None:
    from consentry.errors import UnreadableInputError

    build().save(tmp_path / "idx")
    (tmp_path / "idx" / "seg-0000" / "entries.npy").write_bytes(b"garbage")
    with pytest.raises(UnreadableInputError, match="damaged"):
        TextContainmentIndex.load(tmp_path / "idx")


def _write_version_1(directory: Path, works: dict[str, str]) -> None:
    """A directory in the layout of the version 1 (single-tier) index, as older Consentry
    releases wrote it: sorted top-32-bit keys with global word positions per segment."""
    from consentry.fingerprint.text import decode_fingerprint
    from consentry.index.text import boilerplate_stop_hashes

    stop = boilerplate_stop_hashes()
    keys, postings, starts, words = [], [], [], []
    base = 0
    for text in works.values():
        (winnowed,) = [p for p in prints(text) if p.kind == WINNOW_KIND]
        fingerprint = decode_fingerprint(winnowed.value)
        keep = ~stop.mask(fingerprint.hashes)
        keys.append((fingerprint.hashes[keep] >> np.uint64(32)).astype(np.uint32))
        postings.append(fingerprint.positions[keep] + base)
        starts.append(base)
        words.append(fingerprint.word_count)
        base += fingerprint.word_count + 6
    all_keys = np.concatenate(keys)
    all_postings = np.concatenate(postings)
    order = np.lexsort((all_postings, all_keys))
    segment = directory / "seg-0000"
    segment.mkdir(parents=True)
    np.save(segment / "keys.npy", all_keys[order])
    np.save(segment / "postings.npy", all_postings[order].astype(np.uint32))
    np.save(segment / "bloom.npy", np.zeros(1024, dtype=np.uint64))
    np.save(directory / "work_starts.npy", np.array(starts, dtype=np.int64))
    np.save(directory / "work_words.npy", np.array(words, dtype=np.int64))
    (directory / "works.txt").write_text("".join(f"{w}\n" for w in works))
    meta = {
        "format": "consentry-text-containment",
        "version": 1,
        "watermark": 5,
        "k": 6,
        "window": 8,
        "next_position": base,
        "min_matched_words": 40,
        "min_run": 12,
        "segments": ["seg-0000"],
        "fingerprints": int(all_keys.size),
    }
    (directory / "meta.json").write_text(json.dumps(meta))


def test_a_version_1_index_is_converted_exactly_and_rewritten_on_save(tmp_path: Path) -> None:
    _write_version_1(tmp_path / "old", WORKS)
    converted = TextContainmentIndexFactory().load(tmp_path / "old")
    fresh = build()
    assert (converted.watermark, converted.work_count, len(converted)) == (5, 5, len(fresh))
    assert (converted.loaded_version, fresh.loaded_version) == (1, None)
    assert converted.seed_count == fresh.seed_count
    for query in (embed(excerpt("W3", 1000, 200)), embed(excerpt("W1", 10, 60))):
        assert converted.match(prints(query)) == fresh.match(prints(query))
    # The next save (after a catch-up) writes the current version.
    converted.add("W9", prints(prose(600, seed=9)), 9)
    converted.save(tmp_path / "old")
    meta = json.loads((tmp_path / "old" / "meta.json").read_text())
    assert meta["version"] == 2
    reloaded = TextContainmentIndex.load(tmp_path / "old")
    assert (reloaded.work_count, reloaded.loaded_version) == (6, 2)


def test_a_home_upgrades_a_version_1_index_when_it_opens_it(tmp_path: Path) -> None:
    # A home owns its index folder: the first open rewrites an old format, so later opens do
    # not pay the conversion again (a signed snapshot, by contrast, is never rewritten).
    from consentry.config import Settings
    from consentry.registry.indexes import index_dir, open_indexes
    from consentry.store.database import Database

    settings = Settings.load(env={"CONSENTRY_HOME": str(tmp_path / "home")})
    folder = index_dir(settings.home) / "text-containment"
    _write_version_1(folder, WORKS)
    with Database(settings) as db:
        db.migrate()
        with db.read() as session:
            (index,) = open_indexes(
                session, settings.home, factories=[TextContainmentIndexFactory()]
            )
    assert json.loads((folder / "meta.json").read_text())["version"] == 2
    assert TextContainmentIndex.load(folder).loaded_version == 2
    assert index.work_count == 5


def test_an_index_from_a_newer_release_is_refused_clearly(tmp_path: Path) -> None:
    from consentry.errors import UnreadableInputError

    build().save(tmp_path / "idx")
    meta = json.loads((tmp_path / "idx" / "meta.json").read_text())
    meta["version"] = 3
    (tmp_path / "idx" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(UnreadableInputError, match=r"version 3.*newer Consentry"):
        TextContainmentIndex.load(tmp_path / "idx")


def test_the_index_is_a_tenth_of_the_text_it_indexes(tmp_path: Path) -> None:
    index = build()
    index.save(tmp_path / "idx")
    text_bytes = sum(len(t.encode()) for t in WORKS.values())
    # Small indexes carry fixed costs (tables, headers); real-size figures are in the bench.
    assert index.disk_bytes(tmp_path / "idx") < 0.2 * text_bytes
    assert 0.2 < index.seed_count / len(index) < 0.35


def test_seed_hits_extend_to_the_whole_passage_and_lone_stream_matches_do_not_count() -> None:
    index = build()
    (hit,) = index.match_fingerprint(decode_fp(prints(embed(excerpt("W4", 1500, 400)))))
    # One passage, measured on verified fingerprints: about the 400 words, not the ~100
    # around one seed.
    assert hit.runs[0].words >= 380
    assert hit.runs[0].work_start >= 1495
    assert hit.runs[0].work_end <= 1900


def test_weak_runs_neither_add_words_nor_pass_for_a_passage() -> None:
    from consentry.index.text import _chain, _weigh

    def weigh(work: list[int], query: list[int], seed: list[bool]) -> tuple[list[int], int]:
        runs = _chain(np.array(work), np.array(query), np.array(seed), k=6, gap=14, max_shift=1)
        counted, longest = _weigh(runs)
        return [r.words for r in counted], longest

    # A lone stream pair (8 bits) is noise; a lone seed (32 bits) is a shared 6-gram.
    assert weigh([100], [50], [False]) == ([], 0)
    assert weigh([100], [50], [True]) == ([6], 0)
    # A seed extended by one stream pair counts its words but is no 12-word passage...
    assert weigh([100, 108], [50, 58], [True, False]) == ([14], 0)
    # ...three aligned pairs are.
    assert weigh([100, 105, 110], [50, 55, 60], [True, False, False]) == ([16], 16)
    # Stream pairs on no seed's alignment are chance, however many.
    assert weigh([100, 105, 110], [50, 55, 60], [False, False, False]) == ([], 0)
    assert weigh([10, 100, 105, 110], [0, 52, 57, 62], [True, False, False, False]) == ([6], 0)
    # Pairs off the diagonal by more than one word do not chain.
    assert weigh([100, 105, 110], [50, 57, 64], [True, False, False]) == ([6], 0)
    # Runs on one alignment with a typo-damaged stretch between them are one passage; runs
    # further apart than the bridge are not.
    assert weigh([100, 105, 150, 155], [50, 55, 100, 105], [True, False, False, False]) == (
        [61],
        61,
    )
    assert weigh([100, 105, 250, 255], [50, 55, 200, 205], [True, False, True, False]) == (
        [11, 11],
        0,
    )


def test_seeds_have_keys_in_the_lowest_quarter_and_queries_probe_only_those() -> None:
    from consentry.index.text import SEED_KEY_LIMIT

    index = build()
    for work in index._pending_works:
        assert (work.keys[work.seeds] < SEED_KEY_LIMIT).all()
        # Window minima are small: the limit drops (almost) none of them.
        wide = seed_mask(work.keys, work.positions, work.word_count, k=6, window=36)
        assert work.seeds.sum() >= wide.sum() - 1
    # A query made only of fingerprints above the limit looks nothing up.
    query = decode_fp(prints(embed(excerpt("W2", 300, 300))))
    high = query.hashes >> np.uint64(32) >= SEED_KEY_LIMIT
    only_high = TextFingerprint(
        query.hashes[high], query.positions[high], query.word_count, query.k, query.window
    )
    assert index.match_fingerprint(only_high) == []
    assert [h.work_id for h in index.match_fingerprint(query)] == ["W2"]


@pytest.mark.parametrize("count", range(200, 216))
def test_verification_rows_decode_like_the_stream(count: int) -> None:
    # Rows are read as 32-bit words over three-byte groups; streams of every length modulo
    # 8 slots end in a partial group, where rows fall back to reading bytes. Both must give
    # the stream's own advances for every slot of every row.
    from consentry.index.text import _BLOCK, _ROW

    rng = np.random.default_rng(count)
    grams = rng.integers(0, 2**64, size=count, dtype=np.uint64)
    positions = np.cumsum(rng.integers(1, 9, size=count)).astype(np.int64)
    index = TextContainmentIndex()
    index.add_fingerprint("w", TextFingerprint(grams, positions, int(positions[-1]) + 6))
    segment = index._all_segments()[0]
    slots = int(segment.hash8.size)
    assert slots == count
    expected = segment._advances(np.arange(slots))
    anchors = np.arange(0, slots, _BLOCK)
    together = segment._row_advances(anchors)
    for number, anchor in enumerate(anchors.tolist()):
        alone = segment._row_advances(np.array([anchor]))[0]
        width = min(_ROW, slots - anchor)
        assert np.array_equal(alone[:width], expected[anchor : anchor + width])
        assert np.array_equal(together[number, :width], expected[anchor : anchor + width])
    # The first row is read as 32-bit words, the last one byte by byte.
    assert _ROW // 8 <= segment.advance_words.size <= int(anchors[-1] >> 3) + _ROW // 8 - 1
