"""Log evidence that travels with snapshots and gate manifests, checkable offline.

A *logged event* is one entry of the registry's tamper-evident log (:mod:`consentry.ledger.log`)
together with its RFC 9162 inclusion proof against one signed checkpoint::

    {"index": 7, "kind": "grant.create", "subject": "G1",
     "payload": "<the exact RFC 8785 JSON text that was hashed as leaf 7>",
     "proof": ["<hex hash>", ...]}

Snapshots carry these in ``log.json`` (every grant, work-registration, dispute and reservation
event up to the snapshot's checkpoint); gate manifests copy the ones that admitted items, so an
auditor needs neither the registry nor a network. Specifications: RFC 9162 §2.1.3 (inclusion
proofs), https://c2sp.org/signed-note and https://c2sp.org/tlog-checkpoint (the checkpoint).

Signed statements made here are C2SP signed notes whose text is a fixed header line and one
value line: ``consentry-snapshot\\n<snapshot id>\\n`` (by the operator key) and
``consentry-gate-manifest\\n<sha256 hex of manifest.json>\\n`` (by the gate runner's key).
"""

from __future__ import annotations

import hmac
import json
import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from consentry.errors import ConfigurationError, InvalidInputError, VerificationError
from consentry.ledger import merkle
from consentry.ledger.note import (
    Checkpoint,
    Signer,
    Verifier,
    open_note,
    parse_signer_key,
    parse_verifier_key,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from consentry.ledger.log import TransparencyLog

__all__ = [
    "MANIFEST_STATEMENT",
    "SNAPSHOT_EVENT_KINDS",
    "SNAPSHOT_STATEMENT",
    "LoggedEvent",
    "index_by_subject",
    "load_signer_file",
    "logged_events",
    "natural_key",
    "open_checkpoint",
    "open_statement",
    "parse_events",
    "related_events",
    "resolve_verifier",
    "sign_statement",
    "verify_logged_event",
    "write_private",
]

SNAPSHOT_STATEMENT = "consentry-snapshot"
"""First line of the operator's signature over a snapshot id (file ``SIGNATURE``)."""
MANIFEST_STATEMENT = "consentry-gate-manifest"
"""First line of the runner's signature over a gate manifest's SHA-256 (``manifest.sig``)."""
SNAPSHOT_EVENT_KINDS = ("grant.create", "grant.agree", "grant.revoke", "work.register")
"""Event kinds a snapshot's ``log.json`` carries, besides every ``dispute.*`` and
``reservation.*`` event: what decides whether a grant was in force."""


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """One log entry with its inclusion proof against a checkpoint (see the module doc)."""

    index: int
    kind: str
    subject: str
    payload: str
    proof: tuple[bytes, ...]

    def body(self) -> dict[str, Any]:
        """The payload parsed (a JSON object; checked by :func:`verify_logged_event`)."""
        value = json.loads(self.payload)
        return value if isinstance(value, dict) else {}

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "kind": self.kind,
            "subject": self.subject,
            "payload": self.payload,
            "proof": [h.hex() for h in self.proof],
        }

    @classmethod
    def from_json(cls, value: Any) -> LoggedEvent:
        """Parse one entry; VerificationError naming what is malformed."""
        if not isinstance(value, Mapping):
            raise VerificationError("a logged event must be a JSON object")
        index, kind, subject = value.get("index"), value.get("kind"), value.get("subject")
        payload, proof = value.get("payload"), value.get("proof")
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise VerificationError(f"logged event has no valid index ({index!r})")
        where = f"log index {index}"
        if not isinstance(kind, str) or not isinstance(subject, str):
            raise VerificationError(f"{where}: the event needs a kind and a subject")
        if not isinstance(payload, str):
            raise VerificationError(f"{where}: the event payload must be the logged JSON text")
        if not isinstance(proof, list) or not all(isinstance(h, str) for h in proof):
            raise VerificationError(f"{where}: the inclusion proof must be a list of hex hashes")
        try:
            hashes = tuple(bytes.fromhex(h) for h in proof)
        except ValueError:
            raise VerificationError(f"{where}: an inclusion proof hash is not hex") from None
        if any(len(h) != merkle.HASH_SIZE for h in hashes):
            raise VerificationError(f"{where}: inclusion proof hashes must be 32 bytes")
        return cls(index, kind, subject, payload, hashes)


def logged_events(session: Session, log: TransparencyLog, size: int) -> list[LoggedEvent]:
    """Every event a snapshot carries, among the first ``size`` leaves, with proofs to ``size``.

    Each proof is checked against the root of ``size`` before it is handed out, so a damaged
    leaf or journal row stops the export instead of producing evidence that cannot verify.
    """
    # Export only: the gate, which reads snapshots, never imports SQLAlchemy and the tables.
    from sqlalchemy import or_, select

    from consentry.store.tables import EventRow

    root = log.root(size)
    rows = session.execute(
        select(EventRow.seq, EventRow.kind, EventRow.subject, EventRow.payload)
        .where(
            EventRow.seq <= size,
            or_(
                EventRow.kind.in_(SNAPSHOT_EVENT_KINDS),
                EventRow.kind.like("dispute.%"),
                EventRow.kind.like("reservation.%"),
            ),
        )
        .order_by(EventRow.seq)
    )
    out: list[LoggedEvent] = []
    for seq, kind, subject, payload in rows:
        event = LoggedEvent(
            seq - 1, kind, subject, payload, tuple(log.inclusion_proof(seq - 1, size))
        )
        try:
            verify_logged_event(event, Checkpoint("x", size, root))
        except VerificationError as exc:
            raise VerificationError(
                f"{exc}; the log does not match its journal — run `consentry ledger verify`"
            ) from None
        out.append(event)
    return out


def verify_logged_event(event: LoggedEvent, checkpoint: Checkpoint) -> dict[str, Any]:
    """Check one logged event against a (verified) checkpoint; return its parsed payload.

    1. The index is inside the checkpointed tree.
    2. The payload's leaf hash is at that index (RFC 9162 §2.1.3.2, exact proof length).
    3. The payload is a registry event of the stated kind and subject.

    Raises VerificationError naming the log index on the first failure.
    """
    where = f"log index {event.index} ({event.kind} {event.subject})"
    # 1. Inside the tree.
    if event.index >= checkpoint.size:
        raise VerificationError(
            f"{where}: not in the checkpointed tree of {checkpoint.size} leaves"
        )
    # 2. Inclusion.
    try:
        merkle.verify_inclusion(
            event.index,
            checkpoint.size,
            merkle.leaf_hash(event.payload.encode("utf-8")),
            event.proof,
            checkpoint.root_hash,
        )
    except VerificationError as exc:
        raise VerificationError(f"{where}: inclusion proof does not verify ({exc})") from None
    # 3. The event it claims to be.
    try:
        body = json.loads(event.payload)
    except ValueError:
        raise VerificationError(f"{where}: the payload is not JSON") from None
    if not isinstance(body, dict) or body.get("kind") != event.kind:
        raise VerificationError(f"{where}: the logged payload is not a {event.kind} event")
    if body.get("subject") != event.subject:
        raise VerificationError(f"{where}: the logged payload is about {body.get('subject')!r}")
    return body


def open_checkpoint(note: str, verifier: Verifier) -> Checkpoint:
    """Verify a checkpoint note by the log's own key; VerificationError on the first failure.

    1. The note carries a valid signature by ``verifier`` (https://c2sp.org/signed-note).
    2. Its text is a well-formed checkpoint (https://c2sp.org/tlog-checkpoint).
    3. Its origin is the log the key is named after.
    """
    # 1. Signature.
    text, signers = open_note(note, [verifier])
    if verifier.name not in signers:
        raise VerificationError(f"the checkpoint carries no signature by {verifier.name}")
    # 2. Format.
    checkpoint = Checkpoint.parse(text)
    # 3. Origin.
    if checkpoint.origin != verifier.name:
        raise VerificationError(
            f"the checkpoint is from log {checkpoint.origin!r}, the key is {verifier.name!r}"
        )
    return checkpoint


def sign_statement(signer: Signer, header: str, value: str) -> str:
    """A signed note ``<header>\\n<value>\\n`` by ``signer``."""
    return signer.sign(f"{header}\n{value}\n")


def open_statement(note: str, verifier: Verifier, header: str, value: str) -> None:
    """Check a statement made by :func:`sign_statement`; VerificationError if anything differs.

    1. The note has a valid signature by ``verifier`` (unknown signers count for nothing).
    2. Its text is exactly ``<header>\\n<value>\\n``.
    """
    # 1. Signature.
    try:
        text, signers = open_note(note, [verifier])
    except VerificationError as exc:
        raise VerificationError(f"not signed by {verifier.to_vkey()}: {exc}") from None
    if verifier.name not in signers:
        raise VerificationError(f"no signature by {verifier.name}")
    # 2. The statement.
    lines = text.split("\n")
    if len(lines) != 3 or lines[0] != header:
        raise VerificationError(f"the signed text is not a {header} statement")
    if not hmac.compare_digest(lines[1].encode(), value.encode()):
        raise VerificationError(f"the signature is for {lines[1]!r}, not {value!r}")


def resolve_verifier(value: str | Path | Verifier, what: str = "operator key") -> Verifier:
    """A verifier key given as a :class:`Verifier`, a key string, or a file holding one."""
    if isinstance(value, Verifier):
        return value
    text = str(value).strip()
    path = Path(text)
    if isinstance(value, Path) or "+" not in text or path.is_file():
        try:
            text = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise InvalidInputError(
                f"{what} {str(value)!r} is neither a verifier key nor a readable file"
                f" ({exc.strerror})"
            ) from None
    try:
        return parse_verifier_key(text)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{what} {str(value)!r}: {exc}") from None


def load_signer_file(path: Path) -> Signer:
    """A signer key file (``consentry key generate``); refused if group or others can read it."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise InvalidInputError(f"signing key {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigurationError(
            f"signing key {path} is accessible to group or others (mode"
            f" {stat.S_IMODE(mode):04o}); refusing to use it — run `chmod 600 {path}`"
        )
    try:
        return parse_signer_key(path.read_text(encoding="utf-8").strip())
    except (InvalidInputError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"signing key {path} is not a signer key: {exc}") from None


def write_private(path: Path, text: str) -> None:
    """Create ``path`` with mode 0600 from the first byte; never overwrite."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InvalidInputError(f"{path} already exists; keys are never overwritten") from None
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def parse_events(values: Iterable[Any]) -> list[LoggedEvent]:
    return [LoggedEvent.from_json(v) for v in values]


def index_by_subject(events: Sequence[LoggedEvent]) -> dict[str, list[LoggedEvent]]:
    out: dict[str, list[LoggedEvent]] = {}
    for event in events:
        out.setdefault(event.subject, []).append(event)
    return out


def natural_key(ident: str) -> tuple[int, str]:
    """Natural order for registry ids (W2 < W10)."""
    digits = ident[1:]
    return (int(digits), ident) if digits.isdigit() else (-1, ident)


def related_events(
    events: Iterable[LoggedEvent],
    grant_works: Mapping[str, Iterable[str]],
    other_works: Iterable[str],
) -> tuple[dict[str, list[LoggedEvent]], dict[str, list[LoggedEvent]]]:
    """The events that decide whether the grants admitted their works, grouped.

    Returns ``(grants, works)``: for each grant id of ``grant_works``, its ``grant.*`` events;
    for each work it admitted (and each of ``other_works``), its ``work.register`` event and
    the ``dispute.*`` and ``reservation.*`` events that can bear on it — disputes naming it,
    and reservations of it or of all the works of one of its holders. Each list is in log
    order; keys are in natural id order.
    """
    events = list(events)
    by_subject = index_by_subject(events)
    disputes_of: dict[str, set[str]] = {}
    reservations_of_work: dict[str, set[str]] = {}
    reservations_of_party: dict[str, set[str]] = {}
    for event in events:
        if event.kind == "dispute.open":
            for work_id in event.body().get("works", []):
                disputes_of.setdefault(str(work_id), set()).add(event.subject)
        elif event.kind == "reservation.create":
            body = event.body()
            if body.get("work"):
                reservations_of_work.setdefault(str(body["work"]), set()).add(event.subject)
            else:
                reservations_of_party.setdefault(str(body.get("by")), set()).add(event.subject)

    def ordered(selected: Iterable[LoggedEvent]) -> list[LoggedEvent]:
        return sorted(selected, key=lambda e: e.index)

    grants = {
        grant_id: ordered(e for e in by_subject.get(grant_id, []) if e.kind.startswith("grant."))
        for grant_id in sorted(grant_works, key=natural_key)
    }
    wanted = {w for works in grant_works.values() for w in works} | set(other_works)
    works: dict[str, list[LoggedEvent]] = {}
    for work_id in sorted(wanted, key=natural_key):
        register = [e for e in by_subject.get(work_id, []) if e.kind == "work.register"]
        holders = {
            str(h.get("party"))
            for e in register
            for h in e.body().get("holders", [])
            if isinstance(h, dict)
        }
        related = disputes_of.get(work_id, set()) | reservations_of_work.get(work_id, set())
        for holder in holders:
            related |= reservations_of_party.get(holder, set())
        works[work_id] = ordered(
            [*register, *(e for subject in related for e in by_subject.get(subject, []))]
        )
    return grants, works
