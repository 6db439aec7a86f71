"""The tamper-evident log of the registry: an RFC 9162 Merkle tree over the events journal.

What is logged: every registry change writes one ``events`` row (see
:func:`consentry.registry.events.record_event`) and, in the same transaction, one leaf here.
The leaf data is the event's ``payload`` column, RFC 8785 canonical JSON, as UTF-8 bytes; its
hash is ``SHA-256(0x00 || payload)``; leaf ``i`` is event ``seq = i + 1``.

Storage (:mod:`consentry.store.log_tables`): ``log_nodes`` keeps the hash of every perfect
subtree, keyed by ``(level, index)``, so appending reads at most one batch of left siblings and
writes the nodes the leaf completes, and a proof or root reads O(log n) nodes in one query.

Numbering is serialised by the registry's single-writer rule (:meth:`Database.write`: ``BEGIN
IMMEDIATE`` on SQLite, a transaction-scoped advisory lock on PostgreSQL): the writer reads the
log size, appends leaf ``size`` and inserts the event with ``seq = size + 1`` explicitly. A
second writer waits for the lock and then sees the first one's leaf, so indices are dense and
never handed out twice; a rolled-back transaction takes its leaf and its event with it (even
on PostgreSQL, whose sequences do not roll back — which is why ``seq`` is assigned here and not
by the database).

Checkpoints are C2SP signed notes (:mod:`consentry.ledger.note`) by the operator key
(:mod:`consentry.ledger.keys`), named after the log's origin; every checkpoint issued is
stored, and a new one is signed only if it is consistent with the previous one. Receipts are
``c2sp.org/tlog-proof@v1`` proofs whose ``extra`` line carries the event's payload, so they
verify offline with nothing but the operator's public key (:func:`verify_receipt`).

Personal data stays out of the leaves: ``party.add`` carries salted commitments
``SHA-256(salt || value)`` (:func:`commit_party`); erasing a person deletes the salt
(:func:`erase_party_secrets`) and leaves the log, and its verification, intact.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import TextClause, delete, event, func, select, text
from sqlalchemy.orm import Session

from consentry.config import Settings
from consentry.errors import (
    ConfigurationError,
    ConflictError,
    InvalidInputError,
    StoreError,
    VerificationError,
)
from consentry.ledger import merkle
from consentry.ledger.keys import (
    create_operator_key,
    load_operator_signer,
    operator_key_path,
    operator_pub_path,
    read_operator_vkey,
)
from consentry.ledger.note import (
    Checkpoint,
    Signer,
    TlogProof,
    Verifier,
    open_note,
    parse_tlog_proof,
    parse_verifier_key,
)
from consentry.store.database import Database
from consentry.store.log_tables import LogCheckpointRow, LogMetaRow, LogNodeRow, PartySecretRow
from consentry.store.tables import EventRow

__all__ = [
    "DEFAULT_ORIGIN_PREFIX",
    "GRANT_RECEIPT_EVENTS",
    "LogIdentity",
    "ReceiptCheckError",
    "ReceiptProof",
    "ReceiptVerification",
    "StoredCheckpoint",
    "TransparencyLog",
    "VerifyReport",
    "append_event_leaf",
    "commit_party",
    "commitment",
    "erase_party_secrets",
    "init_log",
    "verify_receipt",
]

DEFAULT_ORIGIN_PREFIX = "consentry.local/"
GRANT_RECEIPT_EVENTS = ("grant.create", "grant.agree", "grant.revoke")
"""The events of a grant that a receipt proves."""

_META_ORIGIN = "origin"
_META_VKEY = "operator_vkey"
_CHUNK = 10_000
_MAX_PROBLEMS = 20

T = TypeVar("T")


# --- reading stored nodes -----------------------------------------------------------------


class _RecordingReader:
    """Records which nodes a computation reads; the access pattern never depends on values."""

    def __init__(self) -> None:
        self.wanted: list[tuple[int, int]] = []

    def node(self, level: int, index: int) -> bytes:
        self.wanted.append((level, index))
        return bytes(merkle.HASH_SIZE)


class _DictReader:
    def __init__(self, nodes: Mapping[tuple[int, int], bytes]) -> None:
        self._nodes = nodes

    def node(self, level: int, index: int) -> bytes:
        return self._nodes[level, index]


def _node_query(count: int) -> TextClause:
    """``SELECT`` of ``count`` nodes by primary key, built once per count.

    Plain equality terms joined by OR: SQLite and PostgreSQL answer each from the primary key
    (a row-value ``IN`` list makes SQLite scan the table), and a prepared text statement keeps
    SQLAlchemy's per-call statement building out of the O(log n) path.
    """
    query = _NODE_QUERIES.get(count)
    if query is None:
        terms = " OR ".join(f'(level = :l{n} AND "index" = :i{n})' for n in range(count))
        # Only integers and fixed text go into the SQL; values travel as bound parameters.
        sql = f'SELECT level, "index", hash FROM log_nodes WHERE {terms}'  # noqa: S608
        query = _NODE_QUERIES[count] = text(sql)
    return query


_NODE_QUERIES: dict[int, TextClause] = {}
_LOG_SIZE = text('SELECT max("index") FROM log_nodes WHERE level = 0')
_JOURNAL_AND_LOG_ENDS = text(
    'SELECT (SELECT max(seq) FROM events), (SELECT max("index") FROM log_nodes WHERE level = 0)'
)
_INSERT_NODE = text('INSERT INTO log_nodes (level, "index", hash) VALUES (:l, :i, :h)')
_BATCH_NODES = 200


def _fetch_nodes(
    session: Session, wanted: Sequence[tuple[int, int]]
) -> dict[tuple[int, int], bytes]:
    """Read the given nodes (one query per 200); StoreError naming the first one missing."""
    unique = sorted(set(wanted))
    found: dict[tuple[int, int], bytes] = {}
    for start in range(0, len(unique), _BATCH_NODES):
        part = unique[start : start + _BATCH_NODES]
        params: dict[str, int] = {}
        for n, (level, index) in enumerate(part):
            params[f"l{n}"] = level
            params[f"i{n}"] = index
        rows = session.connection().execute(_node_query(len(part)), params)
        for level, index, hash_ in rows:
            found[int(level), int(index)] = bytes(hash_)
    for level, index in unique:
        if (level, index) not in found:
            raise StoreError(
                f"log node (level {level}, index {index}) is missing; the log tables are"
                " damaged — run `consentry ledger verify --from-scratch`"
            )
    return found


def _with_nodes(session: Session, compute: Callable[[merkle.NodeReader], T]) -> T:
    """Run a node-based computation with every node it needs fetched in one query."""
    recorder = _RecordingReader()
    compute(recorder)
    if not recorder.wanted:
        return compute(_DictReader({}))
    return compute(_DictReader(_fetch_nodes(session, recorder.wanted)))


def _log_size(session: Session) -> int:
    last = session.connection().execute(_LOG_SIZE).scalar()
    return 0 if last is None else int(last) + 1


def _insert_nodes(session: Session, nodes: Sequence[merkle.NodeTriple]) -> None:
    session.connection().execute(_INSERT_NODE, [{"l": lv, "i": ix, "h": h} for lv, ix, h in nodes])


# --- appending ----------------------------------------------------------------------------


def append_event_leaf(session: Session, payload: bytes) -> int:
    """Append an event's payload as the next leaf; return its index (the event's seq - 1).

    Must run in the registry's write transaction (:meth:`Database.write`), whose lock makes
    the read-size-then-append atomic. The first append of a transaction refuses (StoreError)
    when the journal and the log disagree in length, so a damaged log is not extended
    silently; later appends of the same transaction use the cached right edge.
    """
    if _FRONTIER not in session.info:
        last_seq, last_leaf = session.connection().execute(_JOURNAL_AND_LOG_ENDS).one()
        events = int(last_seq or 0)
        size = 0 if last_leaf is None else int(last_leaf) + 1
        if events != size:
            raise StoreError(
                f"the events journal ends at seq {events} but the log holds {size} leaves;"
                " refusing to append — run `consentry ledger verify`"
            )
    return TransparencyLog(session).append(payload)


# The right edge of the tree (a compact range), cached in ``session.info`` for the rest of the
# transaction so that an append costs one INSERT and no reads. Any end of a transaction or
# savepoint — commit, release or rollback — drops it, so it never outlives what it describes.
_FRONTIER = "consentry.ledger.frontier"
_WATCHED = "consentry.ledger.frontier_watch"


def _forget_frontier(session: Session, _transaction: object) -> None:
    session.info.pop(_FRONTIER, None)


def _frontier(session: Session) -> merkle.CompactRange:
    frontier = session.info.get(_FRONTIER)
    if isinstance(frontier, merkle.CompactRange):
        return frontier
    size = _log_size(session)
    frontier = _with_nodes(session, lambda reader: merkle.CompactRange.from_nodes(size, reader))
    if not session.info.get(_WATCHED):
        event.listen(session, "after_transaction_end", _forget_frontier)
        session.info[_WATCHED] = True
    session.info[_FRONTIER] = frontier
    return frontier


# --- commitments instead of personal data ---------------------------------------------------


def commitment(salt: bytes, value: str) -> str:
    """``SHA-256(salt || UTF-8 value)`` in lowercase hex: hiding while the salt is secret."""
    return hashlib.sha256(salt + value.encode("utf-8")).hexdigest()


def commit_party(
    session: Session, party_id: int, name: str, email: str | None
) -> dict[str, str | None]:
    """Store a fresh salt for the party; return the commitments its ``party.add`` event carries.

    The salt is 32 random bytes, kept only in ``party_secrets``; whoever holds it (the
    registry) can show that a logged commitment is a given name or address, nobody else can
    even test a guess.
    """
    salt = secrets.token_bytes(32)
    name_c = commitment(salt, name)
    email_c = commitment(salt, email) if email is not None else None
    session.add(
        PartySecretRow(
            party_id=party_id, salt=salt, name_commitment=name_c, email_commitment=email_c
        )
    )
    return {"name_commitment": name_c, "email_commitment": email_c}


def erase_party_secrets(session: Session, party_id: int) -> bool:
    """Delete the party's salt (erasure); return whether there was one.

    The log keeps the commitments (it cannot change), but without the salt they no longer
    link to the person; the log and its checkpoints still verify.
    """
    result = session.execute(delete(PartySecretRow).where(PartySecretRow.party_id == party_id))
    return bool(getattr(result, "rowcount", 0))


# --- the log ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    """A checkpoint as stored: size, root, the signed note as issued, when."""

    size: int
    root_hash: bytes
    note: str
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "root": self.root_hash.hex(),
            "created_at": self.created_at.isoformat(),
            "note": self.note,
        }


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What :meth:`TransparencyLog.verify` checked and the problems it found (first ones)."""

    size: int
    root: bytes
    from_scratch: bool
    entries_checked: int
    nodes_checked: int
    checkpoints_checked: int
    problems: tuple[str, ...]
    bad_index: int | None
    """The first log index whose leaf does not match its event (None if every leaf does)."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "size": self.size,
            "root": self.root.hex(),
            "from_scratch": self.from_scratch,
            "entries_checked": self.entries_checked,
            "nodes_checked": self.nodes_checked,
            "checkpoints_checked": self.checkpoints_checked,
            "bad_index": self.bad_index,
            "problems": list(self.problems),
        }


@dataclass(frozen=True, slots=True)
class ReceiptProof:
    """One event of a receipt: its kind, log index and ``tlog-proof@v1`` text."""

    event: str
    index: int
    proof: str

    def to_json(self) -> dict[str, Any]:
        return {"event": self.event, "index": self.index, "proof": self.proof}


@dataclass
class _Problems:
    items: list[str] = field(default_factory=list)
    bad_index: int | None = None

    def add(self, message: str, index: int | None = None) -> None:
        if index is not None and self.bad_index is None:
            self.bad_index = index
        if len(self.items) < _MAX_PROBLEMS:
            self.items.append(message)


class TransparencyLog:
    """The log over one session (a write session for :meth:`append` and :meth:`checkpoint`)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    # -- state --------------------------------------------------------------------------------

    def size(self) -> int:
        """Number of leaves."""
        return _log_size(self.session)

    def root(self, size: int | None = None) -> bytes:
        """``MTH`` of the first ``size`` leaves (default: all), from O(log n) stored nodes."""
        n = self.size() if size is None else self._check_size(size)
        return _with_nodes(self.session, lambda reader: merkle.root_from_nodes(n, reader))

    def meta(self, key: str) -> str | None:
        row = self.session.get(LogMetaRow, key)
        return None if row is None else row.value

    def set_meta(self, key: str, value: str) -> None:
        row = self.session.get(LogMetaRow, key)
        if row is None:
            self.session.add(LogMetaRow(key=key, value=value))
        else:
            row.value = value
        self.session.flush()

    def origin(self) -> str:
        """The log's origin line; ConfigurationError before ``consentry init`` chose one."""
        origin = self.meta(_META_ORIGIN)
        if origin is None:
            raise ConfigurationError("the log has no origin yet; run `consentry init`")
        return origin

    def operator_vkey(self) -> str | None:
        """The operator's verifier key recorded at ``consentry init``."""
        return self.meta(_META_VKEY)

    # -- appending and proving ----------------------------------------------------------------

    def append(self, leaf_data: bytes) -> int:
        """Append ``leaf_data`` as a leaf; store the nodes it completes; return its index.

        Reads the right edge once per transaction (``popcount(size)`` nodes), then appends
        with one INSERT of the completed perfect subtrees (O(log n) rows, 2 on average).
        """
        frontier = _frontier(self.session)
        index = frontier.size
        try:
            nodes = frontier.append(merkle.leaf_hash(leaf_data))
            _insert_nodes(self.session, nodes)
        except BaseException:
            # The cached edge moved but the rows may not have landed: read it again next time.
            self.session.info.pop(_FRONTIER, None)
            raise
        return index

    def leaf_hash(self, index: int) -> bytes:
        return _fetch_nodes(self.session, [(0, index)])[0, index]

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """RFC 9162 inclusion proof of leaf ``index`` in the tree of ``size`` leaves."""
        self._check_size(size)
        return _with_nodes(
            self.session, lambda reader: merkle.inclusion_proof_from_nodes(index, size, reader)
        )

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """RFC 9162 consistency proof from ``size1`` to ``size2`` leaves (``0 < size1``)."""
        self._check_size(size2)
        return _with_nodes(
            self.session,
            lambda reader: merkle.consistency_proof_from_nodes(size1, size2, reader),
        )

    def _check_size(self, size: int) -> int:
        current = self.size()
        if size < 0 or size > current:
            raise InvalidInputError(f"tree size {size} is not between 0 and the log size {current}")
        return size

    # -- checkpoints --------------------------------------------------------------------------

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        row = self.session.scalars(
            select(LogCheckpointRow).order_by(LogCheckpointRow.size.desc()).limit(1)
        ).first()
        return None if row is None else _stored(row)

    def checkpoints(self) -> list[StoredCheckpoint]:
        rows = self.session.scalars(select(LogCheckpointRow).order_by(LogCheckpointRow.size))
        return [_stored(row) for row in rows]

    def checkpoint(self, signer: Signer) -> str:
        """Sign, store and return a checkpoint of the current tree (a C2SP signed note).

        Refuses (VerificationError) to sign a tree that is not consistent with the latest
        stored checkpoint, and (ConfigurationError) to sign with a key that is not the log's.
        When nothing was appended since the latest checkpoint, returns that one.
        """
        # 1. Only the log's own key signs, under the log's origin.
        origin = self.origin()
        if signer.name != origin:
            raise ConfigurationError(
                f"operator key is named {signer.name!r}, but the log's origin is {origin!r}"
            )
        expected = self.operator_vkey()
        if expected is not None and signer.verifier().to_vkey() != expected:
            raise ConfigurationError(
                f"this operator key is not the registry's ({expected}); use the home whose"
                " keys/ directory holds the registry's operator key"
            )
        # 2. The tree as it is now.
        size = self.size()
        root = self.root(size)
        previous = self.latest_checkpoint()
        if previous is not None:
            # 3. Trees only grow; the same size must have the same root.
            if previous.size > size:
                raise VerificationError(
                    f"refusing to sign: the log has {size} leaves, fewer than the"
                    f" {previous.size} of the latest checkpoint"
                )
            if previous.size == size:
                if not hmac.compare_digest(previous.root_hash, root):
                    raise VerificationError(
                        f"refusing to sign: the root of the {size} leaves changed since the"
                        " latest checkpoint"
                    )
                return previous.note
            # 4. The new tree must extend the old one (RFC 9162 §2.1.4); from 0 nothing to prove.
            if previous.size > 0:
                proof = self.consistency_proof(previous.size, size)
                try:
                    merkle.verify_consistency(previous.size, size, previous.root_hash, root, proof)
                except VerificationError as exc:
                    raise VerificationError(
                        f"refusing to sign a checkpoint of {size} leaves: it is not consistent"
                        f" with the stored checkpoint of {previous.size} ({exc})"
                    ) from None
        # 5. Sign and store.
        note = signer.sign(Checkpoint(origin, size, root).to_text())
        self.session.add(
            LogCheckpointRow(size=size, root_hash=root, note=note, created_at=datetime.now(UTC))
        )
        self.session.flush()
        return note

    # -- receipts -----------------------------------------------------------------------------

    def entries_for_subject(
        self, subject: str, kinds: Sequence[str]
    ) -> list[tuple[int, str, bytes]]:
        """``(index, kind, payload)`` of the subject's events of the given kinds, in order."""
        rows = self.session.execute(
            select(EventRow.seq, EventRow.kind, EventRow.payload)
            .where(EventRow.subject == subject, EventRow.kind.in_(list(kinds)))
            .order_by(EventRow.seq)
        )
        return [(seq - 1, kind, payload.encode("utf-8")) for seq, kind, payload in rows]

    def receipt_proofs(
        self, subject: str, signer: Signer, kinds: Sequence[str] = GRANT_RECEIPT_EVENTS
    ) -> list[ReceiptProof]:
        """Tlog proofs of every event of ``subject`` (of ``kinds``) against a checkpoint.

        Uses the latest checkpoint when it covers the events, else signs a fresh one (so this
        needs a write session then). Each proof carries the event payload as its extra data.
        """
        entries = self.entries_for_subject(subject, kinds)
        if not entries:
            raise ConflictError(f"{subject} has no logged events")
        needed = entries[-1][0] + 1
        latest = self.latest_checkpoint()
        if latest is None or latest.size < needed:
            self.checkpoint(signer)
            latest = self.latest_checkpoint()
            if latest is None or latest.size < needed:
                raise StoreError("the checkpoint just signed was not stored")
        size = latest.size
        proofs: list[ReceiptProof] = []
        for index, kind, payload in entries:
            # The leaf stored for this index must be the event's: never prove a damaged leaf.
            if not hmac.compare_digest(self.leaf_hash(index), merkle.leaf_hash(payload)):
                raise VerificationError(
                    f"log index {index} does not match its event ({kind}); run"
                    " `consentry ledger verify`"
                )
            hashes = tuple(self.inclusion_proof(index, size))
            text = TlogProof(index, hashes, latest.note, extra=payload).to_text()
            proofs.append(ReceiptProof(kind, index, text))
        return proofs

    # -- verification -------------------------------------------------------------------------

    def verify(self, from_scratch: bool = False, vkey: str | None = None) -> VerifyReport:
        """Check the log against the journal and every stored checkpoint.

        1. Every event's payload hashes to the stored leaf at index ``seq - 1``, and there are
           exactly as many leaves as events (the first bad index is reported).
        2. With ``from_scratch``: the whole tree is rebuilt from the events, every stored node
           is compared with it, and no extra node exists.
        3. Every stored checkpoint is signed by the operator key (``vkey``, default the one
           recorded at init), names this log's origin and its own size and root, and its root
           is the tree's at that size (the rebuilt tree's with ``from_scratch``).
        4. Consecutive checkpoints are consistent (RFC 9162 §2.1.4).
        """
        problems = _Problems()
        size = self.size()
        stored = self.checkpoints()
        wanted_roots = {cp.size for cp in stored}
        rebuilt_roots: dict[int, bytes] = {}
        # 1 and 2 in one pass over the journal.
        entries, nodes = self._check_entries(problems, from_scratch, wanted_roots, rebuilt_roots)
        try:
            root = self.root(size)
        except StoreError as exc:
            problems.add(str(exc))
            root = merkle.EMPTY_ROOT
        # 3 and 4.
        self._check_checkpoints(problems, stored, size, vkey, rebuilt_roots, from_scratch)
        return VerifyReport(
            size=size,
            root=root,
            from_scratch=from_scratch,
            entries_checked=entries,
            nodes_checked=nodes,
            checkpoints_checked=len(stored),
            problems=tuple(problems.items),
            bad_index=problems.bad_index,
        )

    def _check_entries(
        self,
        problems: _Problems,
        from_scratch: bool,
        wanted_roots: set[int],
        rebuilt_roots: dict[int, bytes],
    ) -> tuple[int, int]:
        leaves = _iter_level(self.session, 0)
        frontier = merkle.CompactRange()
        levels: dict[int, Iterator[tuple[int, bytes]]] = {}
        if 0 in wanted_roots:
            rebuilt_roots[0] = merkle.EMPTY_ROOT
        checked = nodes_checked = 0
        for position, (seq, kind, payload) in enumerate(_iter_events(self.session)):
            if seq != position + 1:
                problems.add(
                    f"log index {position}: the journal's event at this position has seq {seq},"
                    f" not {position + 1} (an event is missing)",
                    position,
                )
                return checked, nodes_checked
            computed = merkle.leaf_hash(payload.encode("utf-8"))
            leaf = next(leaves, None)
            if leaf is None:
                problems.add(
                    f"log index {position}: event seq {seq} ({kind}) has no leaf", position
                )
                return checked, nodes_checked
            if not hmac.compare_digest(leaf[1], computed):
                problems.add(
                    f"log index {position}: event seq {seq} ({kind}) does not match its stored"
                    " leaf hash (the event or the leaf was altered)",
                    position,
                )
            checked += 1
            if from_scratch:
                for level, index, hash_ in frontier.append(computed):
                    if level == 0:
                        continue  # compared above
                    nodes_checked += 1
                    self._compare_node(problems, levels, level, index, hash_)
                if frontier.size in wanted_roots:
                    rebuilt_roots[frontier.size] = frontier.root()
        extra = next(leaves, None)
        if extra is not None:
            problems.add(
                f"log index {extra[0]}: the log has a leaf but the journal has no event seq"
                f" {extra[0] + 1} (an event was deleted)",
                extra[0],
            )
        if from_scratch:
            nodes_checked += checked
            self._check_node_counts(problems, frontier.size)
        return checked, nodes_checked

    def _compare_node(
        self,
        problems: _Problems,
        levels: dict[int, Iterator[tuple[int, bytes]]],
        level: int,
        index: int,
        computed: bytes,
    ) -> None:
        stream = levels.get(level)
        if stream is None:
            stream = levels[level] = _iter_level(self.session, level)
        stored = next(stream, None)
        first, last = index << level, ((index + 1) << level) - 1
        where = f"log node (level {level}, index {index}) over leaves {first}-{last}"
        if stored is None or stored[0] != index:
            problems.add(f"{where} is missing", first)
        elif not hmac.compare_digest(stored[1], computed):
            problems.add(f"{where} does not match the tree rebuilt from the events", first)

    def _check_node_counts(self, problems: _Problems, size: int) -> None:
        """Every level holds exactly the nodes a tree of ``size`` leaves completes."""
        counts = self.session.execute(
            select(LogNodeRow.level, func.count()).group_by(LogNodeRow.level)
        ).all()
        for level, count in counts:
            expected = size >> level
            if count != expected:
                problems.add(
                    f"log nodes at level {level}: {count} stored, a tree of {size} leaves has"
                    f" {expected}"
                )

    def _check_checkpoints(
        self,
        problems: _Problems,
        stored: Sequence[StoredCheckpoint],
        size: int,
        vkey: str | None,
        rebuilt_roots: Mapping[int, bytes],
        from_scratch: bool,
    ) -> None:
        if not stored:
            return
        recorded = self.operator_vkey()
        trusted = vkey or recorded
        if trusted is None:
            problems.add("no operator key to check the checkpoints against; run `consentry init`")
            return
        if vkey is not None and recorded is not None and vkey != recorded:
            problems.add(f"the operator key recorded in the log ({recorded}) is not {vkey}")
        verifier = parse_verifier_key(trusted)
        origin = self.meta(_META_ORIGIN)
        previous: StoredCheckpoint | None = None
        for cp in stored:
            label = f"checkpoint {cp.size}"
            try:
                checkpoint = _open_checkpoint(cp.note, verifier)
            except VerificationError as exc:
                problems.add(f"{label}: {exc}")
                continue
            if origin is not None and checkpoint.origin != origin:
                problems.add(f"{label}: origin {checkpoint.origin!r} is not the log's {origin!r}")
            if checkpoint.size != cp.size or checkpoint.root_hash != cp.root_hash:
                problems.add(f"{label}: the signed note does not match the stored size and root")
            if cp.size > size:
                problems.add(f"{label}: the log has only {size} leaves")
                continue
            if from_scratch:
                actual = rebuilt_roots.get(cp.size)
            else:
                try:
                    actual = self.root(cp.size)
                except StoreError as exc:
                    problems.add(f"{label}: {exc}")
                    continue
            if actual is None or not hmac.compare_digest(actual, checkpoint.root_hash):
                problems.add(f"{label}: its root is not the root of the first {cp.size} leaves")
            if previous is not None and previous.size > 0:
                try:
                    proof = self.consistency_proof(previous.size, cp.size)
                    merkle.verify_consistency(
                        previous.size, cp.size, previous.root_hash, checkpoint.root_hash, proof
                    )
                except (VerificationError, StoreError) as exc:
                    problems.add(f"{label}: not consistent with checkpoint {previous.size} ({exc})")
            previous = cp


def _stored(row: LogCheckpointRow) -> StoredCheckpoint:
    return StoredCheckpoint(row.size, bytes(row.root_hash), row.note, row.created_at)


def _open_checkpoint(note: str, verifier: Verifier) -> Checkpoint:
    text, signers = open_note(note, [verifier])
    checkpoint = Checkpoint.parse(text)
    if verifier.name not in signers:
        raise VerificationError(f"no signature by the operator key {verifier.name}")
    return checkpoint


def _iter_events(session: Session) -> Iterator[tuple[int, str, str]]:
    last = 0
    while True:
        rows = session.execute(
            select(EventRow.seq, EventRow.kind, EventRow.payload)
            .where(EventRow.seq > last)
            .order_by(EventRow.seq)
            .limit(_CHUNK)
        ).all()
        if not rows:
            return
        for seq, kind, payload in rows:
            yield int(seq), kind, payload
        last = rows[-1][0]


def _iter_level(session: Session, level: int) -> Iterator[tuple[int, bytes]]:
    last = -1
    while True:
        rows = session.execute(
            select(LogNodeRow.index, LogNodeRow.hash)
            .where(LogNodeRow.level == level, LogNodeRow.index > last)
            .order_by(LogNodeRow.index)
            .limit(_CHUNK)
        ).all()
        if not rows:
            return
        for index, hash_ in rows:
            yield int(index), bytes(hash_)
        last = rows[-1][0]


# --- set-up at `consentry init` -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogIdentity:
    """The log's origin and the operator's verifier key, as fixed at ``consentry init``."""

    origin: str
    operator_vkey: str


def init_log(db: Database, settings: Settings, env: Mapping[str, str] | None = None) -> LogIdentity:
    """Choose the log's origin and the operator key (once), idempotently.

    The origin comes from ``CONSENTRY_LOG_ORIGIN`` or is ``consentry.local/<8 random hex>``;
    it is stored in ``log_meta`` and never changes afterwards (ConfigurationError if the
    variable later names another). The key pair is generated into ``<home>/keys`` unless one
    is there; its verifier key is recorded in ``log_meta`` so that a home holding another
    registry's key is refused.
    """
    env = os.environ if env is None else env
    wanted = env.get("CONSENTRY_LOG_ORIGIN") or None
    home = settings.home
    with db.write() as session:
        log = TransparencyLog(session)
        origin = log.meta(_META_ORIGIN)
        if origin is None:
            origin = wanted or f"{DEFAULT_ORIGIN_PREFIX}{secrets.token_hex(4)}"
            _check_origin(origin)
            log.set_meta(_META_ORIGIN, origin)
        elif wanted is not None and wanted != origin:
            raise ConfigurationError(
                f"CONSENTRY_LOG_ORIGIN is {wanted!r}, but this registry's log is {origin!r};"
                " a log's origin never changes"
            )
        recorded = log.operator_vkey()
        if operator_key_path(home).exists():
            signer = load_operator_signer(home)
            if signer.name != origin:
                raise ConfigurationError(
                    f"the operator key in {operator_key_path(home)} is for log"
                    f" {signer.name!r}, not this registry's {origin!r}"
                )
            vkey = signer.verifier().to_vkey()
            if read_operator_vkey(home) is None:
                operator_pub_path(home).write_text(vkey + "\n", encoding="utf-8")
        elif recorded is not None:
            raise ConfigurationError(
                f"this registry's operator key ({recorded}) is not in {home / 'keys'};"
                " copy the operator's keys/ directory there"
            )
        else:
            vkey = create_operator_key(home, origin)
        if recorded is None:
            log.set_meta(_META_VKEY, vkey)
        elif recorded != vkey:
            raise ConfigurationError(
                f"the operator key in {operator_key_path(home)} is not this registry's ({recorded})"
            )
    return LogIdentity(origin, vkey)


def _check_origin(origin: str) -> None:
    try:
        # The key is named after the origin: it must be a valid key name and origin line.
        Verifier(origin, bytes(32))
        Checkpoint(origin, 0, merkle.EMPTY_ROOT)
    except InvalidInputError as exc:
        raise ConfigurationError(f"CONSENTRY_LOG_ORIGIN {origin!r} is not usable: {exc}") from None


# --- receipts: offline verification (no database) -------------------------------------------


class ReceiptCheckError(VerificationError):
    """A receipt failed one named check (``check``): format, checkpoint signature, ..."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(message)
        self.check = check


@dataclass(frozen=True, slots=True)
class ReceiptVerification:
    """A verified receipt: the log, the checkpoint size, and each proven event."""

    grant_id: str | None
    origin: str
    checkpoint_size: int
    events: tuple[tuple[str, int, str], ...]
    """``(kind, index, subject)`` of each proven event, in the receipt's order."""

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": True,
            "grant_id": self.grant_id,
            "origin": self.origin,
            "checkpoint_size": self.checkpoint_size,
            "proofs": [
                {"event": kind, "index": index, "subject": subject}
                for kind, index, subject in self.events
            ],
        }


@functools.lru_cache(maxsize=256)
def _open_note_cached(note: str, vkey: str) -> tuple[str, tuple[str, ...]]:
    """:func:`open_note` memoised on (note, key): verification is a pure function of both.

    Receipts come in batches that share one checkpoint (a snapshot's, a manifest's), so the
    Ed25519 verification — most of a receipt's cost — is done once per checkpoint. Failures
    raise and are not cached.
    """
    text, signers = open_note(note, [parse_verifier_key(vkey)])
    return text, tuple(signers)


def verify_receipt(text: str, verifier: Verifier) -> ReceiptVerification:
    """Verify a grant receipt (its JSON) or a single tlog proof, offline, with one public key.

    Raises :class:`ReceiptCheckError` naming the first failed check:

    1. ``format``: the receipt is JSON of the documented shape or one ``tlog-proof@v1`` text,
       each proof carries the event payload as extra data, and its index is the one listed;
    2. ``checkpoint signature``: the checkpoint is a signed note with a valid signature by the
       trusted operator key (signatures by unknown keys do not count);
    3. ``checkpoint``: the note's text is a well-formed checkpoint;
    4. ``origin``: the checkpoint is from the log the key is named after;
    5. ``inclusion``: the payload's leaf hash is at the index in the checkpointed tree
       (RFC 9162 §2.1.3.2, exact proof length);
    6. ``event``: the payload is the event the receipt says (kind, and the grant as subject).
    """
    grant_id, items = _parse_receipt(text)
    events: list[tuple[str, int, str]] = []
    origin = ""
    size = 0
    for number, (claimed_kind, claimed_index, proof_text) in enumerate(items, start=1):
        label = f"proof {number}" + (
            f" ({claimed_kind} at index {claimed_index})" if claimed_kind else ""
        )

        def fail(check: str, detail: str, label: str = label) -> ReceiptCheckError:
            return ReceiptCheckError(check, f"receipt check '{check}' failed for {label}: {detail}")

        # 1. Format.
        try:
            proof = parse_tlog_proof(proof_text)
        except VerificationError as exc:
            raise fail("format", str(exc)) from None
        if proof.extra is None:
            raise fail("format", "the proof carries no event payload (extra line)")
        if claimed_index is not None and proof.index != claimed_index:
            raise fail("format", f"the proof is for index {proof.index}")
        # 2. Signature by the trusted key.
        try:
            note_text, signers = _open_note_cached(proof.checkpoint_note, verifier.to_vkey())
        except VerificationError as exc:
            raise fail("checkpoint signature", str(exc)) from None
        if verifier.name not in signers:
            raise fail("checkpoint signature", f"no signature by {verifier.name}")
        # 3. A checkpoint.
        try:
            checkpoint = Checkpoint.parse(note_text)
        except VerificationError as exc:
            raise fail("checkpoint", str(exc)) from None
        # 4. From the log the key speaks for.
        if checkpoint.origin != verifier.name:
            raise fail(
                "origin", f"checkpoint is from {checkpoint.origin!r}, the key is {verifier.name!r}"
            )
        # 5. Inclusion of the payload's leaf.
        try:
            merkle.verify_inclusion(
                proof.index,
                checkpoint.size,
                merkle.leaf_hash(proof.extra),
                proof.hashes,
                checkpoint.root_hash,
            )
        except VerificationError as exc:
            raise fail("inclusion", str(exc)) from None
        # 6. The event is the one claimed.
        kind, subject = _event_of(proof.extra)
        if kind is None or subject is None:
            raise fail("event", "the payload is not a registry event")
        if claimed_kind and kind != claimed_kind:
            raise fail("event", f"the logged event is {kind}, not {claimed_kind}")
        if grant_id is not None and subject != grant_id:
            raise fail("event", f"the logged event is about {subject}, not {grant_id}")
        events.append((kind, proof.index, subject))
        origin, size = checkpoint.origin, max(size, checkpoint.size)
    return ReceiptVerification(grant_id, origin, size, tuple(events))


def _parse_receipt(text: str) -> tuple[str | None, list[tuple[str, int | None, str]]]:
    def bad(detail: str) -> ReceiptCheckError:
        return ReceiptCheckError("format", f"receipt check 'format' failed: {detail}")

    if not text.lstrip().startswith("{"):
        return None, [("", None, text)]
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise bad(f"the receipt is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise bad("the receipt must be a JSON object")
    grant_id = data.get("grant_id")
    proofs = data.get("proofs")
    if not isinstance(grant_id, str) or not isinstance(proofs, list) or not proofs:
        raise bad("the receipt needs a grant_id and a non-empty list of proofs")
    items: list[tuple[str, int | None, str]] = []
    for number, entry in enumerate(proofs, start=1):
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("event"), str)
            and isinstance(entry.get("index"), int)
            and not isinstance(entry.get("index"), bool)
            and isinstance(entry.get("proof"), str)
        ):
            raise bad(f"proof {number} needs event, index and proof")
        items.append((entry["event"], entry["index"], entry["proof"]))
    return grant_id, items


def _event_of(payload: bytes) -> tuple[str | None, str | None]:
    try:
        body = json.loads(payload)
    except ValueError:
        return None, None
    if not isinstance(body, dict):
        return None, None
    kind, subject = body.get("kind"), body.get("subject")
    return (
        kind if isinstance(kind, str) else None,
        subject if isinstance(subject, str) else None,
    )
