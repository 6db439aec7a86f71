"""Registry snapshots: the signed-off, self-contained state the offline gate decides against.

A snapshot is a directory::

    MANIFEST.json        format, version, counts, and the SHA-256 and size of every file
    registry.json        RFC 8785 JSON: parties (id, kind, display name, verification only —
                         no e-mail addresses), works (no fingerprints), grants, reservations,
                         disputes
    fingerprints.parquet work_id, kind, region, value for every registered fingerprint
    index/<name>/…       the match indexes, as saved by each index (memory-mappable)

Its identifier is ``sha256:<hex>`` of the RFC 8785 form of the manifest (without the ``id``
field): change one byte of any file and either that file's hash or the id stops verifying.
The directory is written under a temporary name and renamed into place at the end, so a
crash never leaves something that looks like a complete snapshot.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import rfc8785
from sqlalchemy import select
from sqlalchemy.orm import Session

from consentry import __version__
from consentry.domain import MemoryRegistryView, Work, WorkMatch
from consentry.domain.purposes import PURPOSES_VERSION
from consentry.errors import InvalidInputError, VerificationError
from consentry.fingerprint.base import Fingerprint
from consentry.index import WorkIndex, WorkIndexFactory, default_index_factories
from consentry.registry.ids import format_id
from consentry.registry.indexes import open_indexes
from consentry.registry.jsonable import (
    dispute_from_json,
    dispute_json,
    grant_from_json,
    grant_json,
    party_from_json,
    party_json,
    reservation_from_json,
    reservation_json,
    work_from_json,
    work_json,
)
from consentry.registry.mapping import (
    dispute_from_row,
    load_grants,
    load_works,
    party_from_row,
    reservation_from_row,
)
from consentry.store.tables import (
    DisputeRow,
    FingerprintRow,
    GrantRow,
    PartyRow,
    ReservationRow,
    WorkRow,
)

__all__ = [
    "SNAPSHOT_FORMAT",
    "SNAPSHOT_VERSION",
    "ExactIndex",
    "Snapshot",
    "SnapshotInfo",
    "export_snapshot",
    "read_manifest",
    "verify_files",
]

SNAPSHOT_FORMAT = "consentry-snapshot"
SNAPSHOT_VERSION = 1
_BATCH = 2000
_FP_SCHEMA = pa.schema(
    [
        ("work_id", pa.string()),
        ("kind", pa.string()),
        ("region", pa.string()),
        ("value", pa.string()),
    ]
)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _manifest_id(manifest: dict[str, Any]) -> str:
    body = {k: v for k, v in manifest.items() if k != "id"}
    return "sha256:" + hashlib.sha256(rfc8785.dumps(body)).hexdigest()


def _batched_ids(session: Session, column: Any) -> Iterator[list[int]]:
    last = 0
    while True:
        ids = list(
            session.scalars(select(column).where(column > last).order_by(column).limit(_BATCH))
        )
        if not ids:
            return
        yield ids
        last = ids[-1]


def _registry_json(session: Session) -> dict[str, Any]:
    parties = []
    for p in session.scalars(select(PartyRow).order_by(PartyRow.id)):
        record = party_json(party_from_row(p))
        record.pop("email")  # a snapshot leaves the operator: no contact data in it
        parties.append(record)
    works = []
    for ids in _batched_ids(session, WorkRow.id):
        for w in load_works(session, ids):
            record = work_json(w)
            record.pop("fingerprints")  # they go to fingerprints.parquet
            works.append(record)
    grants = [
        grant_json(g)
        for ids in _batched_ids(session, GrantRow.id)
        for g in load_grants(session, ids)
    ]
    reservations = [
        reservation_json(reservation_from_row(r))
        for r in session.scalars(select(ReservationRow).order_by(ReservationRow.id))
    ]
    disputes = [
        dispute_json(dispute_from_row(d))
        for d in session.scalars(select(DisputeRow).order_by(DisputeRow.id))
    ]
    return {
        "parties": parties,
        "works": works,
        "grants": grants,
        "reservations": reservations,
        "disputes": disputes,
    }


def _write_fingerprints(session: Session, path: Path) -> int:
    count = 0
    with pq.ParquetWriter(path, _FP_SCHEMA, compression="zstd") as writer:
        last = 0
        while True:
            rows = session.execute(
                select(
                    FingerprintRow.id,
                    FingerprintRow.work_id,
                    FingerprintRow.kind,
                    FingerprintRow.region,
                    FingerprintRow.value,
                )
                .where(FingerprintRow.id > last)
                .order_by(FingerprintRow.id)
                .limit(_BATCH * 5)
            ).all()
            if not rows:
                return count
            last = rows[-1].id
            count += len(rows)
            writer.write_table(
                pa.table(
                    {
                        "work_id": [format_id("work", r.work_id) for r in rows],
                        "kind": [r.kind for r in rows],
                        "region": [r.region for r in rows],
                        "value": [r.value for r in rows],
                    },
                    schema=_FP_SCHEMA,
                )
            )


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    path: Path
    id: str
    manifest: dict[str, Any]


def export_snapshot(
    session: Session,
    home: Path,
    out: Path,
    *,
    factories: Sequence[WorkIndexFactory] | None = None,
    extra: dict[str, Any] | None = None,
) -> SnapshotInfo:
    """Write a snapshot of the registry (as this session sees it) to the directory ``out``."""
    if out.exists():
        raise InvalidInputError(f"{out} already exists; snapshots are never overwritten")
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        registry = _registry_json(session)
        (tmp / "registry.json").write_bytes(rfc8785.dumps(registry))
        n_prints = _write_fingerprints(session, tmp / "fingerprints.parquet")
        indexes = open_indexes(session, home, factories=factories)
        for index in indexes:
            index.save(tmp / "index" / index.name)
        files = {
            p.relative_to(tmp).as_posix(): {"sha256": _sha256_file(p), "size": p.stat().st_size}
            for p in sorted(tmp.rglob("*"))
            if p.is_file()
        }
        manifest: dict[str, Any] = {
            "format": SNAPSHOT_FORMAT,
            "version": SNAPSHOT_VERSION,
            "created_at": datetime.now(UTC).isoformat(),
            "tool": f"consentry {__version__}",
            "purposes_version": PURPOSES_VERSION,
            "counts": {
                "parties": len(registry["parties"]),
                "works": len(registry["works"]),
                "grants": len(registry["grants"]),
                "reservations": len(registry["reservations"]),
                "disputes": len(registry["disputes"]),
                "fingerprints": n_prints,
            },
            "indexes": [{"name": i.name, "watermark": i.watermark} for i in indexes],
            "files": files,
            **(extra or {}),
        }
        manifest["id"] = _manifest_id(manifest)
        (tmp / "MANIFEST.json").write_bytes(rfc8785.dumps(manifest))
        for p in tmp.rglob("*"):
            if p.is_file():
                with p.open("rb") as fh:
                    os.fsync(fh.fileno())
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return SnapshotInfo(out, manifest["id"], manifest)


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest of a snapshot, checked for format, version and self-consistency."""
    mpath = path / "MANIFEST.json"
    if not path.is_dir():
        raise InvalidInputError(f"{path}: not a snapshot directory")
    try:
        manifest = json.loads(mpath.read_bytes())
    except FileNotFoundError:
        raise InvalidInputError(f"{path}: no MANIFEST.json; not a Consentry snapshot") from None
    except (OSError, ValueError) as exc:
        raise VerificationError(f"{mpath}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != SNAPSHOT_FORMAT:
        raise InvalidInputError(f"{path}: not a Consentry snapshot (format field)")
    version = manifest.get("version")
    if not isinstance(version, int) or version > SNAPSHOT_VERSION:
        raise VerificationError(
            f"{path}: snapshot format version {version!r} is newer than this Consentry "
            f"understands ({SNAPSHOT_VERSION}); upgrade Consentry"
        )
    if manifest.get("id") != _manifest_id(manifest):
        raise VerificationError(f"{path}: manifest content does not match its id (edited?)")
    return manifest


def verify_files(path: Path, manifest: dict[str, Any]) -> None:
    """Every file listed is present with its hash, and no other file is there."""
    listed: dict[str, Any] = manifest.get("files", {})
    present = {
        p.relative_to(path).as_posix()
        for p in path.rglob("*")
        if p.is_file() and p.name != "MANIFEST.json"
    }
    extra = sorted(present - set(listed))
    if extra:
        raise VerificationError(f"{path}: file not in the manifest: {extra[0]}")
    for name, meta in sorted(listed.items()):
        file = path / name
        if not file.is_file():
            raise VerificationError(f"{path}: missing {name}")
        if file.stat().st_size != meta["size"] or _sha256_file(file) != meta["sha256"]:
            raise VerificationError(f"{path}: content hash of {name} does not verify")


class ExactIndex:
    """Byte-identical matching from a snapshot: SHA-256 -> work ids, in memory."""

    name = "exact"
    kinds = frozenset({"sha256"})

    def __init__(self, table: dict[str, list[str]]) -> None:
        self._table = table

    def match(self, fingerprints: Sequence[Fingerprint]) -> list[WorkMatch]:
        out: list[WorkMatch] = []
        for f in fingerprints:
            if f.kind == "sha256":
                out += [WorkMatch(w, 1.0, "exact") for w in self._table.get(f.value, ())]
        return out


@dataclass
class Snapshot:
    """A loaded snapshot: the registry view and the matchers the gate needs."""

    path: Path
    manifest: dict[str, Any]
    view: MemoryRegistryView
    exact: ExactIndex
    indexes: list[WorkIndex] = field(default_factory=list)

    @property
    def id(self) -> str:
        return str(self.manifest["id"])

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        verify: bool = True,
        factories: Sequence[WorkIndexFactory] | None = None,
    ) -> Snapshot:
        root = Path(path)
        manifest = read_manifest(root)
        if verify:
            verify_files(root, manifest)
        try:
            registry = json.loads((root / "registry.json").read_bytes())
            view = MemoryRegistryView.of(
                works=[work_from_json(w) for w in registry["works"]],
                parties=[party_from_json(p) for p in registry["parties"]],
                grants=[grant_from_json(g) for g in registry["grants"]],
                reservations=[reservation_from_json(r) for r in registry["reservations"]],
                disputes=[dispute_from_json(d) for d in registry["disputes"]],
            )
            table = pq.read_table(
                root / "fingerprints.parquet",
                columns=["work_id", "value"],
                filters=[("kind", "=", "sha256")],
            )
        except (OSError, KeyError, TypeError, ValueError, pa.ArrowException) as exc:
            raise VerificationError(f"{root}: snapshot content is malformed ({exc})") from None
        exact: dict[str, list[str]] = {}
        for work_id, value in zip(
            table.column("work_id").to_pylist(), table.column("value").to_pylist(), strict=True
        ):
            exact.setdefault(value, []).append(work_id)
        wanted = {i["name"] for i in manifest.get("indexes", [])}
        indexes = [
            f.load(root / "index" / f.name)
            for f in (factories if factories is not None else default_index_factories())
            if f.name in wanted
        ]
        return cls(root, manifest, view, ExactIndex(exact), indexes)

    def works(self) -> list[Work]:
        return list(self.view.works.values())
