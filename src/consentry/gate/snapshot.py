"""Registry snapshots: the signed-off, self-contained state the offline gate decides against.

A snapshot is a directory::

    MANIFEST.json        format, version, counts, and the SHA-256 and size of every file
    registry.json        RFC 8785 JSON: parties (id, kind, display name, verification only —
                         no e-mail addresses), works (no fingerprints), grants, reservations,
                         disputes
    fingerprints.parquet work_id, kind, region, value for every registered fingerprint
    index/<name>/…       the match indexes, as saved by each index (memory-mappable)
    log.json             RFC 8785 JSON: the log's origin and operator key, a signed checkpoint
                         covering the whole log, and every grant, work-registration, dispute
                         and reservation event with its inclusion proof against it
    SIGNATURE            a C2SP signed note by the operator key over
                         ``consentry-snapshot\n<manifest id>\n``

Its identifier is ``sha256:<hex>`` of the RFC 8785 form of the manifest (without the ``id``
field): change one byte of any file and either that file's hash or the id stops verifying.
The manifest's ``log`` section names the origin, the operator key and the checkpoint's size
and root, so the id covers them too. The directory is written under a temporary name and
renamed into place at the end, so a crash never leaves something that looks like a complete
snapshot.

Loading (:meth:`Snapshot.load`) checks, against an operator key the caller pins:

1. the manifest's format and version, and that its content matches its id;
2. ``SIGNATURE`` verifies with the pinned key and names this manifest id;
3. the pinned key is the one the manifest's ``log`` section names (else the snapshot is from
   another origin or operator);
4. every file's size and SHA-256, and that no unlisted file is present;
5. the checkpoint in ``log.json`` verifies with the key and matches the manifest's size/root;
6. every event in ``log.json`` is included in that checkpoint (RFC 9162 §2.1.3.2).

Any failure raises :class:`SnapshotCheckError` naming the check.
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
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq
import rfc8785

from consentry import __version__
from consentry.domain import MemoryRegistryView, Work, WorkMatch
from consentry.domain.purposes import PURPOSES_VERSION
from consentry.errors import InvalidInputError, VerificationError
from consentry.filehash import sha256_file
from consentry.fingerprint.base import Fingerprint
from consentry.gate.logbundle import (
    SNAPSHOT_STATEMENT,
    LoggedEvent,
    logged_events,
    open_checkpoint,
    open_statement,
    resolve_verifier,
    sign_statement,
    verify_logged_event,
)
from consentry.index import WorkIndex, WorkIndexFactory, default_index_factories
from consentry.ledger.note import Signer, Verifier
from consentry.registry.ids import format_id
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

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

# Exporting reads the registry's database; loading and verifying a snapshot (what the gate
# and its workers do) must not pay for importing SQLAlchemy, the table models and the ledger
# (~0.3 s per process), so the export-only modules are imported in the functions using them.

__all__ = [
    "SNAPSHOT_FORMAT",
    "SNAPSHOT_VERSION",
    "ExactIndex",
    "Snapshot",
    "SnapshotCheckError",
    "SnapshotInfo",
    "SnapshotLog",
    "export_snapshot",
    "read_manifest",
    "verify_files",
    "verify_snapshot",
]

SNAPSHOT_FORMAT = "consentry-snapshot"
SNAPSHOT_VERSION = 2
"""2: signed (``SIGNATURE``, ``log.json``, the manifest's ``log`` section). 1 was unsigned."""
SIGNATURE_FILE = "SIGNATURE"
LOG_FILE = "log.json"
_UNLISTED = frozenset({"MANIFEST.json", SIGNATURE_FILE})
_BATCH = 2000
_FP_SCHEMA = pa.schema(
    [
        ("work_id", pa.string()),
        ("kind", pa.string()),
        ("region", pa.string()),
        ("value", pa.string()),
    ]
)


def _manifest_id(manifest: dict[str, Any]) -> str:
    body = {k: v for k, v in manifest.items() if k != "id"}
    return "sha256:" + hashlib.sha256(rfc8785.dumps(body)).hexdigest()


def _batched_ids(session: Session, column: Any) -> Iterator[list[int]]:
    from sqlalchemy import select

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
    from sqlalchemy import select

    from consentry.registry.mapping import (
        dispute_from_row,
        load_grants,
        load_works,
        party_from_row,
        reservation_from_row,
    )
    from consentry.store.tables import DisputeRow, GrantRow, PartyRow, ReservationRow, WorkRow

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
    from sqlalchemy import select

    from consentry.store.tables import FingerprintRow

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


class SnapshotCheckError(VerificationError):
    """A snapshot failed one of the numbered load checks (``number``, ``check``)."""

    def __init__(self, number: int, check: str, message: str) -> None:
        super().__init__(f"snapshot check {number} ({check}) failed: {message}")
        self.number = number
        self.check = check


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
    signer: Signer,
    factories: Sequence[WorkIndexFactory] | None = None,
    extra: dict[str, Any] | None = None,
) -> SnapshotInfo:
    """Write a signed snapshot of the registry (as this session sees it) to ``out``.

    ``session`` must be a write session (:meth:`Database.write`): the checkpoint is signed in
    it, and the registry's single-writer lock keeps the log from growing while the snapshot is
    written, so the checkpoint covers exactly the state exported. ``signer`` is the operator
    key (:func:`consentry.ledger.keys.load_operator_signer`).
    """
    from consentry.ledger.log import TransparencyLog
    from consentry.registry.indexes import open_indexes

    if out.exists():
        raise InvalidInputError(f"{out} already exists; snapshots are never overwritten")
    log = TransparencyLog(session)
    note = log.checkpoint(signer)
    verifier = signer.verifier()
    checkpoint = open_checkpoint(note, verifier)
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
        events = logged_events(session, log, checkpoint.size)
        log_json: dict[str, Any] = {
            "origin": checkpoint.origin,
            "operator_vkey": verifier.to_vkey(),
            "checkpoint": note,
            "events": [e.to_json() for e in events],
        }
        (tmp / LOG_FILE).write_bytes(rfc8785.dumps(log_json))
        files = {
            p.relative_to(tmp).as_posix(): {"sha256": sha256_file(p), "size": p.stat().st_size}
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
                "log_events": len(events),
            },
            "indexes": [{"name": i.name, "watermark": i.watermark} for i in indexes],
            "log": {
                "origin": checkpoint.origin,
                "operator_vkey": verifier.to_vkey(),
                "checkpoint_size": checkpoint.size,
                "checkpoint_root": checkpoint.root_hash.hex(),
            },
            "files": files,
            **(extra or {}),
        }
        manifest["id"] = _manifest_id(manifest)
        (tmp / "MANIFEST.json").write_bytes(rfc8785.dumps(manifest))
        signature = sign_statement(signer, SNAPSHOT_STATEMENT, manifest["id"])
        (tmp / SIGNATURE_FILE).write_text(signature, encoding="utf-8")
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
    if version < SNAPSHOT_VERSION:
        raise VerificationError(
            f"{path}: snapshot format version {version} is unsigned; export a new snapshot"
        )
    if manifest.get("id") != _manifest_id(manifest):
        raise VerificationError(f"{path}: manifest content does not match its id (edited?)")
    return manifest


def verify_files(path: Path, manifest: dict[str, Any]) -> None:
    """Every file listed is present with its hash, and no other file is there.

    ``MANIFEST.json`` and ``SIGNATURE`` are the only files not listed (they cannot list
    themselves: the manifest's id covers the list, and the signature covers the id).
    """
    listed: dict[str, Any] = manifest.get("files", {})
    present = {
        rel
        for p in path.rglob("*")
        if p.is_file() and (rel := p.relative_to(path).as_posix()) not in _UNLISTED
    }
    extra = sorted(present - set(listed))
    if extra:
        raise VerificationError(f"{path}: file not in the manifest: {extra[0]}")
    for name, meta in sorted(listed.items()):
        file = path / name
        if not file.is_file():
            raise VerificationError(f"{path}: missing {name}")
        if file.stat().st_size != meta["size"] or sha256_file(file) != meta["sha256"]:
            raise VerificationError(f"{path}: content hash of {name} does not verify")


@dataclass(frozen=True, slots=True)
class SnapshotLog:
    """The verified log evidence of a snapshot: key, checkpoint, signature and events."""

    verifier: Verifier
    key_pinned: bool
    checkpoint_note: str
    signature: str
    events: tuple[LoggedEvent, ...]

    @property
    def origin(self) -> str:
        return self.verifier.name


def verify_snapshot(
    path: Path,
    operator_key: str | Path | Verifier | None,
    *,
    trust_snapshot_key: bool = False,
) -> tuple[dict[str, Any], SnapshotLog]:
    """Run the numbered load checks (module doc) on the snapshot at ``path``.

    ``operator_key`` pins the operator's verifier key (a key string, a file holding one, or a
    :class:`Verifier`). Without it the snapshot is refused, unless ``trust_snapshot_key``: then
    the key the snapshot names is used and the result says it was not pinned.
    Raises :class:`SnapshotCheckError` on the first failure (InvalidInputError for a missing
    or malformed key argument).
    """
    # 1. Format, version, and the manifest's content against its id.
    try:
        manifest = read_manifest(path)
    except VerificationError as exc:
        raise SnapshotCheckError(1, "manifest", str(exc)) from None
    log_meta = manifest.get("log")
    if not isinstance(log_meta, dict) or not isinstance(log_meta.get("operator_vkey"), str):
        raise SnapshotCheckError(1, "manifest", f"{path}: the manifest has no log section")
    if operator_key is None:
        if not trust_snapshot_key:
            raise InvalidInputError(
                f"{path}: no operator key pinned; pass the registry operator's public key"
                " (--operator-key / CONSENTRY_OPERATOR_KEY, operator_key=...) or, knowingly,"
                " --trust-snapshot-key"
            )
        try:
            verifier = resolve_verifier(str(log_meta["operator_vkey"]), "the snapshot's key")
        except InvalidInputError as exc:
            raise SnapshotCheckError(1, "manifest", str(exc)) from None
    else:
        verifier = resolve_verifier(operator_key)
    pinned = operator_key is not None
    # 2. SIGNATURE: the pinned key signed this very manifest id.
    try:
        signature = (path / SIGNATURE_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SnapshotCheckError(
            2, "signature", f"{path}: no {SIGNATURE_FILE} file; the snapshot is not signed"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SnapshotCheckError(
            2, "signature", f"{path}: unreadable {SIGNATURE_FILE} ({exc})"
        ) from None
    try:
        open_statement(signature, verifier, SNAPSHOT_STATEMENT, str(manifest["id"]))
    except VerificationError as exc:
        raise SnapshotCheckError(
            2, "signature", f"{path}: {SIGNATURE_FILE} does not verify with the operator key: {exc}"
        ) from None
    # 3. The key is the one the snapshot's log section names.
    if log_meta.get("operator_vkey") != verifier.to_vkey() or log_meta.get("origin") != (
        verifier.name
    ):
        raise SnapshotCheckError(
            3,
            "origin",
            f"{path}: snapshot from another origin/operator: it names log"
            f" {log_meta.get('origin')!r} and key {log_meta.get('operator_vkey')!r}, the pinned"
            f" key is {verifier.to_vkey()}",
        )
    # 4. Every file's hash.
    try:
        verify_files(path, manifest)
    except VerificationError as exc:
        raise SnapshotCheckError(4, "content hash", str(exc)) from None
    # 5. The checkpoint of log.json.
    try:
        bundle = json.loads((path / LOG_FILE).read_bytes())
        note = bundle["checkpoint"]
        raw_events = bundle["events"]
        if not isinstance(note, str) or not isinstance(raw_events, list):
            raise TypeError("checkpoint must be a note and events a list")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SnapshotCheckError(
            5, "checkpoint", f"{path}: {LOG_FILE} is malformed ({exc})"
        ) from None
    try:
        checkpoint = open_checkpoint(note, verifier)
    except VerificationError as exc:
        raise SnapshotCheckError(5, "checkpoint", f"{path}: {exc}") from None
    if checkpoint.size != log_meta.get(
        "checkpoint_size"
    ) or checkpoint.root_hash.hex() != log_meta.get("checkpoint_root"):
        raise SnapshotCheckError(
            5, "checkpoint", f"{path}: the checkpoint does not match the manifest's size and root"
        )
    # 6. Every event's inclusion proof.
    events: list[LoggedEvent] = []
    for raw in raw_events:
        try:
            event = LoggedEvent.from_json(raw)
            verify_logged_event(event, checkpoint)
        except VerificationError as exc:
            raise SnapshotCheckError(6, "inclusion", f"{path}: {exc}") from None
        events.append(event)
    return manifest, SnapshotLog(verifier, pinned, note, signature, tuple(events))


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
    log: SnapshotLog | None = None
    """The verified log evidence (None when loaded with ``verify=False``)."""

    @property
    def id(self) -> str:
        return str(self.manifest["id"])

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        operator_key: str | Path | Verifier | None = None,
        trust_snapshot_key: bool = False,
        verify: bool = True,
        factories: Sequence[WorkIndexFactory] | None = None,
    ) -> Snapshot:
        """Load and verify a snapshot against the pinned ``operator_key`` (module doc).

        ``verify=False`` skips every check but the manifest's own (for worker processes of a
        snapshot the caller has just verified).
        """
        root = Path(path)
        log: SnapshotLog | None = None
        if verify:
            manifest, log = verify_snapshot(
                root, operator_key, trust_snapshot_key=trust_snapshot_key
            )
        else:
            manifest = read_manifest(root)
        try:
            registry = json.loads((root / "registry.json").read_bytes())
            view = MemoryRegistryView.of(
                works=[work_from_json(w) for w in registry["works"]],
                parties=[party_from_json(p) for p in registry["parties"]],
                grants=[grant_from_json(g) for g in registry["grants"]],
                reservations=[reservation_from_json(r) for r in registry["reservations"]],
                disputes=[dispute_from_json(d) for d in registry["disputes"]],
            )
            # ParquetFile, not read_table(filters=...): the dataset API that filters need
            # imports pyarrow.dataset and pandas, ~0.3 s of start-up in every gate worker.
            exact: dict[str, list[str]] = {}
            with pq.ParquetFile(root / "fingerprints.parquet") as fingerprints:
                for batch in fingerprints.iter_batches(columns=["kind", "work_id", "value"]):
                    for kind, work_id, value in zip(
                        batch.column("kind").to_pylist(),
                        batch.column("work_id").to_pylist(),
                        batch.column("value").to_pylist(),
                        strict=True,
                    ):
                        if kind == "sha256":
                            exact.setdefault(value, []).append(work_id)
        except (OSError, KeyError, TypeError, ValueError, pa.ArrowException) as exc:
            raise VerificationError(f"{root}: snapshot content is malformed ({exc})") from None
        wanted = {i["name"] for i in manifest.get("indexes", [])}
        indexes = [
            f.load(root / "index" / f.name)
            for f in (factories if factories is not None else default_index_factories())
            if f.name in wanted
        ]
        return cls(root, manifest, view, ExactIndex(exact), indexes, log)

    def works(self) -> list[Work]:
        return list(self.view.works.values())
