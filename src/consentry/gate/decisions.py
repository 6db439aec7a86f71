"""The decision table: chunk files while a run is under way, ``decisions.parquet`` at the end,
and the Merkle root that lets any single decision be proved later.

Leaf ``i`` of the decisions tree is the RFC 8785 canonical JSON of row ``i`` (rows in ordinal
order; ``evidence`` is a JSON string inside the row, hashed as that string), hashed as an
RFC 9162 leaf. The root goes into the manifest.

A chunk file (``NNNNNNNN.leaves``) holds the leaves of its rows, one per line, then one line
of :class:`ChunkSummary` (counts for the report, admitted ordinals, the works and grants the
manifest must prove). The leaf *is* the row — lossless JSON — so the chunk is written without
building a table, hashed at the end without re-encoding, and turned into ``decisions.parquet``
by Arrow's C++ JSON reader; the summary spares the end of the run a pass over the rows in
Python. Workers build both (:class:`LeafEncoder`); the main process only writes them.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from consentry.domain import Decision, Reason
from consentry.errors import InvalidInputError
from consentry.gate.report import Tally
from consentry.ledger.canonical import canonical_json
from consentry.ledger.merkle import CompactRange, leaf_hash

if TYPE_CHECKING:
    from consentry.gate.engine import GateDecision

__all__ = [
    "CHUNK_SUFFIX",
    "DECISION_SCHEMA",
    "ChunkSummary",
    "DecisionsWriter",
    "LeafEncoder",
    "decision_leaf",
    "read_chunk",
    "write_chunk",
]

CHUNK_SUFFIX = ".leaves"

DECISION_SCHEMA = pa.schema(
    [
        ("ordinal", pa.int64()),
        ("key", pa.string()),
        ("decision", pa.string()),
        ("reasons", pa.list_(pa.string())),
        ("basis", pa.string()),
        ("work_ids", pa.list_(pa.string())),
        ("scores", pa.list_(pa.float64())),
        ("stages", pa.list_(pa.string())),
        ("grant_ids", pa.list_(pa.string())),
        ("error", pa.string()),
        ("source", pa.string()),
        ("evidence", pa.string()),
    ]
)


def decision_leaf(record: dict[str, Any]) -> bytes:
    """The bytes hashed into the decisions Merkle tree for one row: its RFC 8785 JSON.

    Rows have fixed ASCII keys, string values (escaped by the C ``json`` encoder exactly as
    RFC 8785 does), integers, and scores in [0, 1]. ``json.dumps`` with sorted keys then
    differs from RFC 8785 only in how it prints floats (Python switches to exponent form
    below 1e-4, ECMAScript below 1e-6), so integral scores are passed as
    ints and rows with a score Python would print in exponent form take the general
    serializer. ``tests/test_gate_decisions.py`` checks the equivalence with ``rfc8785``.
    """
    scores = record["scores"]
    if any(not (s == 0 or s.is_integer() or 1e-4 <= abs(s) < 1e16) for s in scores):
        return canonical_json(record)
    row = dict(record, scores=[int(s) if s.is_integer() else s for s in scores])
    return json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _fast_score(score: float) -> bool:
    """Does ``json.dumps`` print this score as RFC 8785 does (see :func:`decision_leaf`)?"""
    return score == 0 or score.is_integer() or 1e-4 <= abs(score) < 1e16


# One C encoder for the pieces of a leaf: compact separators, UTF-8 kept as is (RFC 8785).
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
# What that encoder does for a str, without its generic dispatch (the per-row hot path).
_encode_str: Callable[[str], str] = json.encoder.encode_basestring


def _encode_opt(value: str | None) -> str:
    return "null" if value is None else _encode_str(value)


def _encode_strs(values: Sequence[str]) -> str:
    return "[" + ",".join(map(_encode_str, values)) + "]" if values else "[]"


def _encode_scores(scores: Sequence[float]) -> str:
    # Only scores that pass _fast_score come here: finite, printed by repr as json does.
    return "[" + ",".join(repr(int(s)) if s.is_integer() else repr(s) for s in scores) + "]"


@dataclass(slots=True)
class ChunkSummary:
    """What the end of a run needs from a chunk besides its rows, in ordinal order."""

    first: int
    """Ordinal of the chunk's first row."""
    count: int = 0
    tally: Tally = field(default_factory=Tally)
    admitted: list[int] = field(default_factory=list)
    grant_works: dict[str, list[str]] = field(default_factory=dict)
    """Grant id -> works it admitted items through (first seen first, no repeats)."""
    other_works: list[str] = field(default_factory=list)
    """Other works named by admit evidence (e.g. a voided registration that was seen)."""

    def merge(self, part: ChunkSummary) -> None:
        """Append the summary of the rows that follow this one's."""
        if part.first != self.first + self.count:
            raise ValueError(f"summary of ordinal {part.first} after {self.first + self.count}")
        self.count += part.count
        self.tally.merge(part.tally)
        self.admitted.extend(part.admitted)
        for grant_id, works in part.grant_works.items():
            known = self.grant_works.setdefault(grant_id, [])
            known.extend(w for w in works if w not in known)
        self.other_works.extend(w for w in part.other_works if w not in self.other_works)

    def to_json(self) -> dict[str, Any]:
        return {
            "first": self.first,
            "count": self.count,
            "tally": self.tally.to_json(),
            "admitted": self.admitted,
            "grant_works": self.grant_works,
            "other_works": self.other_works,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChunkSummary:
        return cls(
            first=int(data["first"]),
            count=int(data["count"]),
            tally=Tally.from_json(data["tally"]),
            admitted=[int(n) for n in data["admitted"]],
            grant_works={g: list(w) for g, w in data["grant_works"].items()},
            other_works=list(data["other_works"]),
        )


@dataclass(frozen=True, slots=True)
class _DecisionParts:
    """Everything in a row that depends only on the decision (and its basis, which the gate
    derives from it), encoded once per decision."""

    decision: Decision
    head: str
    """``{"basis":…,"decision":…,"error":`` — the leaf up to the item's error."""
    middle: str
    """``,"evidence":…,"grant_ids":…,"key":``."""
    reasons_json: str
    outcome: str
    reasons: tuple[str, ...]
    basis: str | None
    grant_pairs: tuple[tuple[str, str], ...]
    other_works: tuple[str, ...]


class LeafEncoder:
    """Turns decisions into leaves (exactly :func:`decision_leaf` of their records) and a
    :class:`ChunkSummary`, without building the records.

    Most rows of a dataset share a handful of decisions (no match; a match on a granted
    work); :meth:`consentry.gate.engine.Gate.decide` returns the *same* :class:`Decision`
    object for equal inputs, so the decision's part of the row — its evidence JSON above
    all — is encoded once, and a row costs the encoding of its key, source, error and
    matches. ``tests/test_gate_decisions.py`` checks the equality with :func:`decision_leaf`.
    """

    _LIMIT = 4096  # distinct decisions remembered; beyond that the memo starts again

    def __init__(self) -> None:
        # Keyed by id(): a Decision's hash walks its evidence; the entry keeps the object
        # alive, so the id cannot be reused while it is in the memo (checked with `is`).
        self._parts: dict[int, _DecisionParts] = {}

    def _parts_of(self, decision: GateDecision) -> _DecisionParts:
        found = self._parts.get(id(decision.decision))
        basis = decision.basis.value if decision.basis else None
        if found is not None and found.decision is decision.decision and found.basis == basis:
            return found
        record = decision.record()
        grant_pairs: list[tuple[str, str]] = []
        other: list[str] = []
        if decision.admitted:
            for evidence in decision.decision.evidence:
                work_id, grant_id = evidence.work_id, evidence.grant_id
                if evidence.reason is Reason.GRANT_IN_FORCE and work_id and grant_id:
                    grant_pairs.append((grant_id, work_id))
                elif work_id:
                    other.append(work_id)
        parts = _DecisionParts(
            decision=decision.decision,
            head='{"basis":'
            + _encode(record["basis"])
            + ',"decision":'
            + _encode(record["decision"])
            + ',"error":',
            middle=',"evidence":'
            + _encode(record["evidence"])
            + ',"grant_ids":'
            + _encode(record["grant_ids"])
            + ',"key":',
            reasons_json=_encode(record["reasons"]),
            outcome=record["decision"],
            reasons=tuple(record["reasons"]),
            basis=record["basis"],
            grant_pairs=tuple(grant_pairs),
            other_works=tuple(other),
        )
        if len(self._parts) >= self._LIMIT:
            self._parts.clear()
        self._parts[id(decision.decision)] = parts
        return parts

    def encode(self, decisions: Iterable[GateDecision], first: int) -> tuple[bytes, ChunkSummary]:
        """Leaves (one per line) and summary of consecutive rows starting at ordinal ``first``."""
        lines: list[str] = []
        summary = ChunkSummary(first)
        tally = summary.tally
        grant_works: dict[str, set[str]] = {}
        other_seen: set[str] = set()
        expected = first
        for decision in decisions:
            if decision.ordinal != expected:
                raise ValueError(f"decision for ordinal {decision.ordinal}, expected {expected}")
            expected += 1
            parts = self._parts_of(decision)
            matches = decision.matches
            work_ids = [m.work_id for m in matches]
            scores = [float(m.score) for m in matches]
            if all(_fast_score(s) for s in scores):
                lines.append(
                    parts.head
                    + _encode_opt(decision.error)
                    + parts.middle
                    + _encode_str(decision.key)
                    + ',"ordinal":'
                    + str(decision.ordinal)
                    + ',"reasons":'
                    + parts.reasons_json
                    + ',"scores":'
                    + (_encode_scores(scores) if scores else "[]")
                    + ',"source":'
                    + _encode_opt(decision.source)
                    + ',"stages":'
                    + _encode_strs([m.stage for m in matches])
                    + ',"work_ids":'
                    + _encode_strs(work_ids)
                    + "}"
                )
            else:  # a score Python would print in exponent form: the general serializer
                lines.append(decision_leaf(decision.record()).decode("utf-8"))
            tally.add_fields(
                decision.key,
                parts.outcome,
                parts.reasons,
                parts.basis,
                decision.source,
                work_ids,
                decision.error,
            )
            if parts.outcome == "admit":
                summary.admitted.append(decision.ordinal)
                for grant_id, work_id in parts.grant_pairs:
                    works = summary.grant_works.setdefault(grant_id, [])
                    if work_id not in grant_works.setdefault(grant_id, set()):
                        grant_works[grant_id].add(work_id)
                        works.append(work_id)
                for work_id in parts.other_works:
                    if work_id not in other_seen:
                        other_seen.add(work_id)
                        summary.other_works.append(work_id)
        summary.count = expected - first
        text = "\n".join(lines)
        return (text + "\n" if lines else "").encode("utf-8"), summary


def _fsync_rename(tmp: Path, final: Path) -> None:
    with tmp.open("rb") as fh:
        os.fsync(fh.fileno())
    tmp.replace(final)
    dir_fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_chunk(path: Path, leaves: bytes, summary: ChunkSummary) -> None:
    """Write one chunk atomically: it exists whole or not at all.

    The data is fsynced before the rename, so a chunk that exists after a power loss is
    whole. The directory is not: a rename lost with it only means the chunk is decided
    again on ``--resume`` — not worth a second fsync per chunk.
    """
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        fh.write(leaves)
        fh.write(json.dumps(summary.to_json(), ensure_ascii=False).encode("utf-8"))
        fh.write(b"\n")
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


def read_chunk(path: Path) -> tuple[bytes, ChunkSummary]:
    """The leaves (one per line) and the summary of a chunk file written by :func:`write_chunk`."""
    data = path.read_bytes()
    cut = data.rfind(b"\n", 0, len(data) - 1) + 1
    try:
        summary = ChunkSummary.from_json(json.loads(data[cut:]))
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInputError(f"{path}: not a gate chunk file ({exc})") from None
    return data[:cut], summary


def _rows_table(leaves: bytes) -> pa.Table:
    """The rows of a chunk as a table: the leaves are the rows' JSON, parsed by Arrow in C++."""
    options = pa_json.ReadOptions(use_threads=False, block_size=max(len(leaves), 1 << 16))
    parse = pa_json.ParseOptions(explicit_schema=DECISION_SCHEMA, unexpected_field_behavior="error")
    table = pa_json.read_json(io.BytesIO(leaves), read_options=options, parse_options=parse)
    table = table.select(DECISION_SCHEMA.names)
    # The explicit schema already gives these types; cast only if not (it imports
    # pyarrow.compute, ~30 ms of start-up).
    return table if table.schema.equals(DECISION_SCHEMA) else table.cast(DECISION_SCHEMA)


class DecisionsWriter:
    """Builds ``decisions.parquet`` and the Merkle root over its rows, chunk by chunk in
    ordinal order (one row group per chunk), while the run goes on: the end of a run then
    only closes the file. Memory stays flat: nothing but the tree's frontier is kept.
    """

    def __init__(self, out: Path, tmp: Path) -> None:
        self.out = out
        self.tmp = tmp
        self.count = 0
        self._tree = CompactRange()
        self._writer = pq.ParquetWriter(tmp, DECISION_SCHEMA, compression="zstd")

    def add(self, leaves: bytes, summary: ChunkSummary, where: Path) -> None:
        """Append the rows of one chunk (the next in ordinal order)."""
        lines = leaves.split(b"\n")[:-1]
        if summary.first != self.count or summary.count != len(lines):
            raise InvalidInputError(
                f"{where}: decision chunks out of order at ordinal {self.count}"
            )
        table = _rows_table(leaves)
        if table.num_rows != len(lines):
            raise InvalidInputError(f"{where}: {table.num_rows} rows for {len(lines)} leaves")
        for line in lines:
            self._tree.append(leaf_hash(line))
        self._writer.write_table(table)
        self.count += len(lines)

    def close(self) -> tuple[int, str]:
        """Finish the file (fsync, rename into place); returns (rows, Merkle root hex)."""
        self._writer.close()
        _fsync_rename(self.tmp, self.out)
        return self.count, self._tree.root().hex()

    def abort(self) -> None:
        self._writer.close()
        self.tmp.unlink(missing_ok=True)
