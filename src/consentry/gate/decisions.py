"""The decision table: chunk files while a run is under way, ``decisions.parquet`` at the end,
and the Merkle root that lets any single decision be proved later.

Leaf ``i`` of the decisions tree is the RFC 8785 canonical JSON of row ``i`` (rows in ordinal
order; ``evidence`` is a JSON string inside the row, hashed as that string), hashed as an
RFC 9162 leaf. The root goes into the manifest.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from consentry.ledger.canonical import canonical_json
from consentry.ledger.merkle import CompactRange, leaf_hash

__all__ = [
    "DECISION_SCHEMA",
    "decision_leaf",
    "iter_chunk_records",
    "write_chunk",
    "write_decisions",
]

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


def _fsync_rename(tmp: Path, final: Path) -> None:
    with tmp.open("rb") as fh:
        os.fsync(fh.fileno())
    tmp.replace(final)
    dir_fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_chunk(path: Path, records: Sequence[dict[str, Any]]) -> None:
    """Write one chunk of decisions atomically: it exists whole or not at all."""
    tmp = path.with_name(path.name + ".tmp")
    table = pa.Table.from_pylist(list(records), schema=DECISION_SCHEMA)
    pq.write_table(table, tmp)
    _fsync_rename(tmp, path)


def iter_chunk_records(path: Path) -> Iterator[dict[str, Any]]:
    table = pq.read_table(path, schema=DECISION_SCHEMA)
    yield from table.to_pylist()


def write_decisions(
    chunks: Sequence[Path], out: Path, on_row: Callable[[dict[str, Any]], None]
) -> tuple[int, str]:
    """Concatenate chunk files (in order) into ``out``; returns (rows, Merkle root hex).

    Each row is also handed to ``on_row`` (counts, report) so nothing is held in memory.
    """
    tmp = out.with_name(out.name + ".tmp")
    tree = CompactRange()
    expected = 0
    with pq.ParquetWriter(tmp, DECISION_SCHEMA, compression="zstd") as writer:
        for chunk in chunks:
            table = pq.read_table(chunk, schema=DECISION_SCHEMA)
            writer.write_table(table)
            for record in table.to_pylist():
                if record["ordinal"] != expected:
                    raise RuntimeError(f"decision chunks out of order at ordinal {expected}")
                expected += 1
                tree.append(leaf_hash(decision_leaf(record)))
                on_row(record)
    _fsync_rename(tmp, out)
    return expected, tree.root().hex()
