"""The independent distractor corpus of the text benchmark (bench/textdistractors.py).

Only the pure parts, on small in-test texts: cleaning, cutting into documents, classifying an
attribution, and matching with a tiny index. Nothing is downloaded.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.textdistractors import (
    Document,
    classify,
    clean,
    clean_fortunes,
    clean_html,
    clean_kjv,
    clean_pod,
    clean_troff,
    cut_documents,
    match_all,
    tidy,
    verbatim_words,
    work_cues,
)

from consentry.fingerprint.text import TextFingerprinter
from consentry.fingerprint.textnorm import normalise
from consentry.index.text import TextContainmentIndex


def _size(n: int, low: int, high: int) -> int:
    """A spread of sizes in [low, high], fixed (no random generator needed)."""
    return low + (n * 7919 + n * n * 104729) % (high - low + 1)


def _prose(paragraphs: list[int], seed: int = 1) -> tuple[str, list[list[str]]]:
    """Paragraphs of the given word counts, every word distinct (w<seed>-<n>)."""
    counter = 0
    out: list[list[str]] = []
    for size in paragraphs:
        words = [f"w{seed}x{counter + i}" for i in range(size)]
        counter += size
        out.append(words)
    lines = []
    for words in out:
        # wrap each paragraph over lines of varying width, as files are
        at, rows = 0, []
        while at < len(words):
            width = 5 + (at * 7 + seed) % 8
            rows.append(" ".join(words[at : at + width]))
            at += width
        lines.append("\n".join(rows))
    return "\n\n".join(lines), out


# -- cutting -----------------------------------------------------------------------------------


def test_documents_do_not_overlap_and_keep_their_words_in_order() -> None:
    text, _ = _prose([_size(n, 20, 400) for n in range(200)])
    docs = cut_documents(text, "pkg", "a/file.txt")
    assert len(docs) > 10
    words = text.split()
    previous_stop = 0
    for doc in docs:
        assert doc.start >= previous_stop  # no word in two documents
        assert doc.text.split() == words[doc.start : doc.stop]
        previous_stop = doc.stop
    assert all(d.package == "pkg" and d.path == "a/file.txt" for d in docs)


def test_documents_respect_the_size_bounds() -> None:
    text, _ = _prose([_size(n, 5, 900) for n in range(300)], seed=2)
    docs = cut_documents(text, "pkg", "f", min_words=300, max_words=3000)
    assert docs
    assert all(300 <= d.words <= 3000 for d in docs)
    assert all(d.words == len(d.text.split()) for d in docs)
    # the targets are spread over the range, not all at one end
    assert min(d.words for d in docs) < 1000 < max(d.words for d in docs)


def test_documents_end_on_paragraph_boundaries() -> None:
    text, paragraphs = _prose([_size(n, 30, 250) for n in range(150)], seed=3)
    ends = set()
    at = 0
    for words in paragraphs:
        at += len(words)
        ends.add(at)
    starts = {0} | ends
    for doc in cut_documents(text, "pkg", "f"):
        assert doc.start in starts
        assert doc.stop in ends


def test_a_paragraph_longer_than_the_maximum_is_split_by_lines() -> None:
    long_paragraph = "\n".join(" ".join(f"l{n}w{i}" for i in range(10)) for n in range(700))
    docs = cut_documents(long_paragraph, "dict", "f", min_words=300, max_words=3000)
    assert docs
    assert all(300 <= d.words <= 3000 for d in docs)
    assert all(d.words % 10 == 0 for d in docs)  # whole lines only
    one_line = " ".join(f"x{i}" for i in range(7000))
    pieces = cut_documents(one_line, "dict", "g", min_words=300, max_words=3000)
    assert [d.words for d in pieces][:2] == [3000, 3000]


def test_short_files_are_left_out_and_short_tails_join_the_previous_document() -> None:
    assert cut_documents("just a few words\n\nand a few more", "p", "f") == []
    text, _ = _prose([350, 40], seed=4)
    docs = cut_documents(text, "p", "f", min_words=300, max_words=3000)
    # 350 words reach any target only if it is <= 350: either way all 390 words are kept once
    assert sum(d.words for d in docs) == 390
    assert docs[-1].stop == 390


def test_cutting_is_deterministic_per_file() -> None:
    text, _ = _prose([_size(n, 20, 400) for n in range(120)], seed=5)
    assert cut_documents(text, "p", "f") == cut_documents(text, "p", "f")


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="min_words"):
        cut_documents("text", "p", "f", min_words=0)
    with pytest.raises(ValueError, match="min_words"):
        cut_documents("text", "p", "f", min_words=500, max_words=400)


def test_document_name_and_words() -> None:
    doc = Document("pkg", "dir/f.txt", 10, 25, "text")
    assert doc.words == 15
    assert doc.name == "pkg:dir/f.txt#10-25"


# -- cleaning ----------------------------------------------------------------------------------


def test_tidy_collapses_spaces_and_keeps_paragraph_breaks() -> None:
    assert tidy("  a   b \n c\n\n\n\n  d  \n") == "a b\nc\n\nd"


def test_html_goes_through_the_product_extractor() -> None:
    page = (
        b"<!DOCTYPE html><html><head><title>T</title><style>p{x:1}</style>"
        b"<script>var secret = 1;</script></head><body>\n<p>First &amp; one.</p>\n\n"
        b"<p>Second <b>bold</b> line.</p></body></html>"
    )
    text = clean_html(page)
    assert "secret" not in text
    assert "p{x:1}" not in text
    assert "First & one." in text
    assert "Second bold line." in text
    assert clean(page, "html") == text


def test_troff_macros_are_stripped_and_text_kept() -> None:
    page = "\n".join(
        [
            '.\\" a comment that must go',
            '.TH LS 1 "2022" "GNU"',
            ".SH NAME",
            "ls \\- list directory contents",
            ".SH DESCRIPTION",
            ".PP",
            "List information about the \\fBFILE\\fRs (the current directory by default).",
            '.B "--all"',
            "do not ignore entries starting with \\(aq.\\(aq and \\*(lqso on\\*(rq\\&.",
        ]
    )
    text = clean_troff(page)
    assert "comment" not in text
    assert ".TH" not in text
    assert "GNU" not in text
    assert "NAME" in text
    assert "DESCRIPTION" in text
    assert "ls - list directory contents" in text
    assert "about the FILEs (the current" in text
    assert "--all" in text
    assert "\\" not in text
    assert "\n\n" in text  # .SH / .PP break paragraphs


def test_pod_codes_are_unwrapped() -> None:
    pod = "\n".join(
        [
            "=head1 NAME",
            "",
            "perlre - Perl regular expressions",
            "",
            "=head2 The B<basics>",
            "",
            "See L<perlop|perlop/Quote> and C<< $x =~ /a/ >> with I<B<nested>> codes.",
            "",
            "=cut",
        ]
    )
    text = clean_pod(pod)
    assert text.startswith("NAME\n\nperlre - Perl regular expressions")
    assert "The basics" in text
    assert "See perlop and $x =~ /a/ with nested codes." in text
    assert "=" not in text.replace("=~", "")


def test_fortunes_become_paragraphs() -> None:
    text = clean_fortunes("First saying.\n-- Someone\n%\nSecond\nsaying.\n%\n")
    assert text == "First saying.\n-- Someone\n\nSecond\nsaying."


def test_kjv_verse_numbers_are_dropped() -> None:
    dump = (
        "\nGenesis 1\n\n  1 In the beginning God created the heaven and the earth.\n"
        "  2 And the earth was without form, and void; and darkness was upon the face of\n"
        "the deep.\n 10 And God called the dry land Earth.\n"
    )
    text = clean_kjv(dump)
    assert text.startswith("Genesis 1\n\nIn the beginning God created")
    assert "face of\nthe deep.\nAnd God called" in text
    assert " 2 " not in text
    assert "10" not in text


# -- classification ----------------------------------------------------------------------------


WORK = (
    "all the world's a stage and all the men and women merely players they have their exits "
    "and their entrances and one man in his time plays many parts his acts being seven ages"
)


def _words(text: str) -> list[str]:
    return normalise(text).tokens


def test_verbatim_words_finds_the_longest_shared_run() -> None:
    assert verbatim_words(["a", "b", "c", "x", "d"], ["q", "a", "b", "c", "d"]) == 3
    assert verbatim_words([], ["a"]) == 0


def test_a_named_verbatim_quotation_is_shared_content() -> None:
    doc = f"As Shakespeare wrote in As You Like It: {WORK}. Then the manual goes on."
    verdict = classify(
        _words(doc), _words(WORK), doc, work_cues("as_you_like_it"), common_source=False, min_run=12
    )
    assert verdict.kind == "quotation"
    assert not verdict.counts_as_false
    assert verdict.verbatim_words == len(_words(WORK))
    assert "shakespeare" in verdict.cues
    assert "as you like it" in verdict.cues


def test_a_common_source_needs_no_name() -> None:
    doc = f"Chapter 3. {WORK}"
    verdict = classify(_words(doc), _words(WORK), doc, ("x",), common_source=True, min_run=12)
    assert verdict.kind == "quotation"


def test_a_verbatim_passage_without_a_cue_is_listed_and_counted() -> None:
    doc = f"Release notes. {WORK}"
    verdict = classify(
        _words(doc), _words(WORK), doc, work_cues("as_you_like_it"), common_source=False, min_run=12
    )
    assert verdict.kind == "verbatim, unattributed"
    assert verdict.counts_as_false
    assert verdict.cues == ()


def test_a_passage_that_is_not_verbatim_is_false_even_when_named() -> None:
    work = _words(WORK)
    doc_words = work.copy()
    for at in range(0, len(doc_words), 8):  # a different word every 8: no 12-word run
        doc_words[at] = "zzz"
    doc = "Shakespeare " + " ".join(doc_words)
    verdict = classify(
        doc_words, work, doc, work_cues("as_you_like_it"), common_source=True, min_run=12
    )
    assert verdict.kind == "false"
    assert verdict.counts_as_false
    assert verdict.verbatim_words < 12


def test_cues_are_whole_words() -> None:
    doc = "Shakespearean drama, a milton-keynes office"  # neither names an author
    verdict = classify(_words(WORK), _words(WORK), doc, ("shakespeare",), common_source=False,
                       min_run=12)  # fmt: skip
    assert verdict.cues == ()


def test_work_cues_turn_work_ids_into_titles() -> None:
    assert work_cues("austen-pride-and-prejudice-012")[0] == "pride and prejudice"
    assert work_cues("sonnet-018")[0] == "sonnet"
    assert work_cues("henry_iv_part_1")[0] == "henry iv"
    assert work_cues("paradise_lost_(no_introduction)")[0] == "paradise lost"
    assert work_cues("moby-dick-042")[0] == "moby dick"
    assert work_cues("moby-dick-042").count("moby dick") == 1
    assert "shakespeare" in work_cues("hamlet")


# -- matching ----------------------------------------------------------------------------------


def test_match_all_finds_a_contained_passage_and_records_it() -> None:
    picks = np.random.default_rng(9).integers(0, 5000, size=3000)
    work = " ".join(f"v{i}" for i in picks)
    index = TextContainmentIndex(min_matched_words=0, min_run=0)
    index.add("W", TextFingerprinter().fingerprint(work.encode(), "text"), 1)
    excerpt = " ".join(work.split()[1000:1120])
    other = " ".join(f"u{i}" for i in range(400))
    docs = [
        Document("p", "a", 0, 520, f"{other}\n\n{excerpt}"),
        Document("p", "b", 0, 400, other),
    ]
    for workers in (1, 2):
        found = match_all(index, docs, min_words=40, min_run=12, workers=workers)
        assert len(found) == 2
        scores, runs = found[0]
        matched, longest = scores["W"]
        assert matched >= 100
        assert longest >= 100
        w0, w1, q0, q1 = runs["W"]
        assert 1000 - 5 <= w0 < w1 <= 1120 + 5
        assert 400 - 5 <= q0 < q1 <= 520 + 5
        assert found[1] == ({}, {})
