"""Auditing a gate run: was every admitted item admitted by a grant the registry logged?

``consentry audit MANIFEST`` re-checks a gate manifest (:mod:`consentry.gate.run`) with nothing
but the operator's public key, and optionally the registry or a newer checkpoint. It runs
numbered steps, records each as ``pass``, ``fail`` or ``skipped`` with its messages, and goes on
after a failure wherever the later steps still mean something, so that the report lists every
problem found:

1. **manifest signature** — ``manifest.sig`` is a signed note by the runner's key over
   ``consentry-gate-manifest\\n<sha256 of manifest.json>\\n`` (https://c2sp.org/signed-note).
   Without a pinned ``runner_key`` the key the manifest names is used, and the step fails with
   "runner key not pinned".
2. **decisions** — the decisions file's SHA-256, its row count, the RFC 9162 Merkle root over
   the RFC 8785 JSON of its rows (:func:`consentry.gate.decisions.decision_leaf`) and the
   counts by decision and basis are the manifest's.
3. **snapshot checkpoint** — the snapshot's checkpoint (https://c2sp.org/tlog-checkpoint) and
   its ``SIGNATURE`` statement verify with the operator key, the origin is the key's, and the
   gate pinned that key.
4. **grants in force** — for every item admitted by grant, each grant it names is in the
   manifest, every logged event of the grant and of the work verifies against the checkpoint
   (RFC 9162 §2.1.3.2), and by those events the grant was in force at the policy's ``at``:
   licensee and purpose, created, ``not_before`` ≤ at < ``expires``, every holder of the work
   agreed by ``at`` (the grantor by granting), the grant covers the work, no revocation
   effective by ``at``, no dispute on the work open at ``at``, no reservation of the purpose by
   a holder active at ``at``. (The holders' verification level is not re-checked: the log
   events in the manifest do not carry it.)
5. **newer checkpoint** — with the registry (``--log HOME``): its latest checkpoint verifies
   and is consistent with the manifest's (RFC 9162 §2.1.4.2), the registry's events at the
   manifest's indices are the manifest's, no event of those grants and works is missing from
   the manifest, the registry's log verifies against its journal, and no event recorded after
   the checkpoint takes effect before the gate time (backdated, or the snapshot was stale).
   With a newer checkpoint file alone: its signature, origin and size (consistency needs the
   registry). Neither: skipped.

Verdict: ``certified`` when every step passes, ``not certified`` when one fails, ``incomplete``
when none fails but one was skipped. Malformed input (not a manifest, an unreadable key) raises
InvalidInputError instead. This module reads files and, for step 5, a registry; everything else
is pure.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select

from consentry.config import Settings
from consentry.domain.bases import Basis
from consentry.errors import InvalidInputError, VerificationError
from consentry.filehash import sha256_file
from consentry.gate.decisions import decision_leaf
from consentry.gate.logbundle import (
    MANIFEST_STATEMENT,
    SNAPSHOT_EVENT_KINDS,
    SNAPSHOT_STATEMENT,
    LoggedEvent,
    open_checkpoint,
    open_statement,
    related_events,
    resolve_verifier,
    verify_logged_event,
)
from consentry.gate.run import MANIFEST_FORMAT, MANIFEST_VERSION, SIGNATURE_FILE
from consentry.ledger import merkle
from consentry.ledger.log import TransparencyLog
from consentry.ledger.note import Checkpoint, Verifier
from consentry.store.database import Database
from consentry.store.tables import EventRow

__all__ = [
    "AuditReport",
    "AuditStep",
    "RegistryState",
    "audit_manifest",
    "read_registry_state",
    "render_audit_html",
]

PASS, FAIL, SKIPPED = "pass", "fail", "skipped"
STEP_NAMES = (
    "manifest signature",
    "decisions",
    "snapshot checkpoint",
    "grants in force",
    "newer checkpoint",
)
_MAX_MESSAGES = 200
# Events recorded after a checkpoint that would have stopped an admission had they been
# known: the others (agreements, registrations, resolutions, lifts) only ever admit more.
_BLOCKING_KINDS = ("grant.revoke", "dispute.open", "reservation.create")


@dataclass
class AuditStep:
    """One numbered check: ``pass`` without problems, ``fail`` with them, or ``skipped``."""

    number: int
    name: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: bool = False

    @property
    def status(self) -> str:
        if self.problems:
            return FAIL
        return SKIPPED if self.skipped else PASS

    def fail(self, message: str) -> None:
        if len(self.problems) < _MAX_MESSAGES:
            self.problems.append(message)
        elif len(self.problems) == _MAX_MESSAGES:
            self.problems.append("… further problems not listed")

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "name": self.name,
            "status": self.status,
            "problems": list(self.problems),
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class AuditReport:
    """What ``consentry audit`` found: the steps, the verdict, and the admissions by basis."""

    manifest_path: Path
    steps: tuple[AuditStep, ...]
    items: int
    admitted: int
    by_basis: dict[str, int]
    policy: dict[str, Any]
    snapshot_id: str
    origin: str
    checkpoint_size: int

    @property
    def verdict(self) -> str:
        statuses = {s.status for s in self.steps}
        if FAIL in statuses:
            return "not certified"
        return "incomplete" if SKIPPED in statuses else "certified"

    @property
    def certified(self) -> bool:
        return self.verdict == "certified"

    @property
    def problems(self) -> list[str]:
        return [f"step {s.number} ({s.name}): {p}" for s in self.steps for p in s.problems]

    def basis_fractions(self) -> list[dict[str, Any]]:
        """Admitted items under each basis: count, share of admitted, share of all items."""
        return [
            {
                "basis": basis.value,
                "items": self.by_basis.get(basis.value, 0),
                "of_admitted": _ratio(self.by_basis.get(basis.value, 0), self.admitted),
                "of_items": _ratio(self.by_basis.get(basis.value, 0), self.items),
            }
            for basis in Basis
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "manifest": str(self.manifest_path),
            "verdict": self.verdict,
            "certified": self.certified,
            "snapshot_id": self.snapshot_id,
            "origin": self.origin,
            "checkpoint_size": self.checkpoint_size,
            "policy": {k: self.policy.get(k) for k in ("licensee", "purpose", "at", "bases")},
            "items": self.items,
            "admitted": self.admitted,
            "bases": self.basis_fractions(),
            "steps": [s.to_json() for s in self.steps],
            "problems": self.problems,
        }


def _ratio(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 0.0


# --- the registry side of step 5 ------------------------------------------------------------


@dataclass(frozen=True)
class RegistryState:
    """What step 5 needs from the registry, read in one read transaction."""

    origin: str | None
    latest_note: str | None
    latest_size: int
    consistency: tuple[bytes, ...]
    """RFC 9162 consistency proof from the manifest's checkpoint size to ``latest_size``."""
    events: tuple[LoggedEvent, ...]
    """Every event of the kinds snapshots carry, up to ``latest_size`` (no proofs)."""
    log_problems: tuple[str, ...]
    """What ``TransparencyLog.verify`` found wrong (journal against leaves, checkpoints)."""


def read_registry_state(settings: Settings, since_size: int) -> RegistryState:
    """Read the registry in ``settings`` (read only) for step 5 of an audit."""
    path = settings.sqlite_path
    if path is not None and not path.exists():
        raise InvalidInputError(f"--log {settings.home}: no registry there")
    db = Database(settings)
    try:
        db.check_schema()
        with db.read() as session:
            log = TransparencyLog(session)
            latest = log.latest_checkpoint()
            latest_size = latest.size if latest is not None else 0
            consistency: list[bytes] = []
            if latest is not None and 0 < since_size < latest_size:
                consistency = log.consistency_proof(since_size, latest_size)
            rows = session.execute(
                select(EventRow.seq, EventRow.kind, EventRow.subject, EventRow.payload)
                .where(EventRow.seq <= max(latest_size, log.size()))
                .order_by(EventRow.seq)
            )
            kinds = set(SNAPSHOT_EVENT_KINDS)
            events = tuple(
                LoggedEvent(seq - 1, kind, subject, payload, ())
                for seq, kind, subject, payload in rows
                if kind in kinds or kind.startswith(("dispute.", "reservation."))
            )
            report = log.verify()
            return RegistryState(
                origin=log.meta("origin"),
                latest_note=latest.note if latest is not None else None,
                latest_size=latest_size,
                consistency=tuple(consistency),
                events=events,
                log_problems=tuple(report.problems),
            )
    finally:
        db.close()


# --- the audit -------------------------------------------------------------------------------


def _read_manifest(path: Path) -> tuple[bytes, dict[str, Any]]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"{path}: cannot read the manifest ({exc.strerror})") from None
    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        raise InvalidInputError(f"{path}: the manifest is not JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise InvalidInputError(f"{path}: not a Consentry gate manifest (format field)")
    version = manifest.get("version")
    if not isinstance(version, int) or version < MANIFEST_VERSION:
        raise InvalidInputError(
            f"{path}: gate manifest version {version!r} carries no log evidence; rerun the gate"
        )
    if version > MANIFEST_VERSION:
        raise InvalidInputError(
            f"{path}: gate manifest version {version} is newer than this Consentry understands"
        )
    return raw, manifest


def _section(manifest: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = manifest.get(key)
    return value if isinstance(value, dict) else {}


def audit_manifest(
    manifest_path: Path,
    *,
    operator_key: str | Path | Verifier,
    runner_key: str | Path | Verifier | None = None,
    decisions: Path | None = None,
    registry: RegistryState | None = None,
    newer_checkpoint: str | None = None,
) -> AuditReport:
    """Audit one gate manifest (module doc); InvalidInputError for input that is no manifest.

    ``registry`` (from :func:`read_registry_state`) or ``newer_checkpoint`` (a signed
    checkpoint note) feed step 5; give at most one.
    """
    raw, manifest = _read_manifest(manifest_path)
    operator = resolve_verifier(operator_key, "operator key")
    runner = resolve_verifier(runner_key, "runner key") if runner_key is not None else None
    steps = tuple(AuditStep(n, name) for n, name in enumerate(STEP_NAMES, start=1))
    # 1. The runner's signature over the manifest's bytes.
    _check_manifest_signature(steps[0], manifest_path, raw, manifest, runner)
    # 2. The decisions file against the manifest.
    decisions_path = decisions or manifest_path.parent / str(
        _section(manifest, "decisions").get("file", "decisions.parquet")
    )
    tally = _check_decisions(steps[1], decisions_path, manifest)
    # 3. The snapshot's checkpoint and signature, by the operator key.
    checkpoint = _check_snapshot_checkpoint(steps[2], manifest, operator)
    # 4. Every admission by grant, by the logged events.
    _check_grants(steps[3], manifest, tally.grant_rows, checkpoint)
    # 5. A newer view of the log.
    _check_newer(steps[4], manifest, operator, checkpoint, registry, newer_checkpoint)
    log_meta = _section(manifest, "log")
    return AuditReport(
        manifest_path=manifest_path,
        steps=steps,
        items=tally.items,
        admitted=tally.admitted,
        by_basis=dict(sorted(tally.by_basis.items())),
        policy=_section(manifest, "policy"),
        snapshot_id=str(_section(manifest, "snapshot").get("id", "")),
        origin=str(log_meta.get("origin", "")),
        checkpoint_size=checkpoint.size if checkpoint is not None else -1,
    )


# -- step 1 -------------------------------------------------------------------------------------


def _check_manifest_signature(
    step: AuditStep,
    manifest_path: Path,
    raw: bytes,
    manifest: Mapping[str, Any],
    runner: Verifier | None,
) -> None:
    sig_path = manifest_path.parent / SIGNATURE_FILE
    try:
        note = sig_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        step.fail(f"the manifest is not signed: no {SIGNATURE_FILE} beside it (gate --sign-key)")
        return
    except (OSError, UnicodeDecodeError) as exc:
        step.fail(f"{sig_path} is unreadable ({exc})")
        return
    named = manifest.get("runner_vkey")
    if runner is None:
        if not isinstance(named, str):
            step.fail("runner key not pinned, and the manifest names none (--runner-key)")
            return
        try:
            runner = resolve_verifier(named, "the manifest's runner key")
        except InvalidInputError as exc:
            step.fail(str(exc))
            return
        step.fail(
            f"runner key not pinned: verified against the key the manifest names ({named});"
            " give --runner-key to know who ran the gate"
        )
    elif isinstance(named, str) and named != runner.to_vkey():
        step.notes.append(f"the manifest names runner key {named}, not the pinned one")
    digest = hashlib.sha256(raw).hexdigest()
    try:
        open_statement(note, runner, MANIFEST_STATEMENT, digest)
    except VerificationError as exc:
        step.fail(
            f"{SIGNATURE_FILE} does not verify for this manifest.json ({exc}): the manifest"
            " was edited after signing, or signed by another key"
        )
        return
    step.notes.append(f"signed by {runner.to_vkey()} over sha256 {digest}")


# -- step 2 -------------------------------------------------------------------------------------


@dataclass
class _Tally:
    items: int = 0
    admitted: int = 0
    by_decision: dict[str, int] = field(default_factory=dict)
    by_basis: dict[str, int] = field(default_factory=dict)
    grant_rows: list[dict[str, Any]] = field(default_factory=list)


def _check_decisions(step: AuditStep, path: Path, manifest: Mapping[str, Any]) -> _Tally:
    tally = _Tally()
    expected = _section(manifest, "decisions")
    try:
        digest = sha256_file(path)
    except OSError as exc:
        step.fail(f"cannot read the decisions file {path} ({exc.strerror})")
        return tally
    if digest != expected.get("sha256"):
        step.fail(f"{path.name}: SHA-256 {digest} is not the manifest's {expected.get('sha256')}")
    tree = merkle.CompactRange()
    try:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
            for row in batch.to_pylist():
                if row.get("ordinal") != tally.items:
                    step.fail(f"row {tally.items}: ordinal {row.get('ordinal')!r} out of order")
                tree.append(merkle.leaf_hash(decision_leaf(row)))
                _count(tally, row)
    except (OSError, ValueError, TypeError, pa.ArrowException) as exc:
        step.fail(f"{path.name} is not a readable decisions table ({exc})")
        return tally
    root = tree.root().hex()
    if root != expected.get("merkle_root"):
        step.fail(
            f"{path.name}: Merkle root {root} over its rows is not the manifest's"
            f" {expected.get('merkle_root')} (a decision was changed, added or removed)"
        )
    if tally.items != expected.get("count"):
        step.fail(f"{path.name} has {tally.items} rows, the manifest says {expected.get('count')}")
    counts = _section(manifest, "counts")
    found = {
        "items": tally.items,
        "admit": tally.by_decision.get("admit", 0),
        "deny": tally.by_decision.get("deny", 0),
    }
    for key, value in found.items():
        if counts.get(key) != value:
            step.fail(f"{value} {key} in the decisions, the manifest counts {counts.get(key)}")
    if dict(sorted(tally.by_basis.items())) != counts.get("by_basis"):
        step.fail(f"admissions by basis {tally.by_basis} differ from the manifest's")
    if not step.problems:
        step.notes.append(f"{tally.items} decisions, Merkle root {root}")
    return tally


def _count(tally: _Tally, row: Mapping[str, Any]) -> None:
    tally.items += 1
    decision = str(row.get("decision"))
    tally.by_decision[decision] = tally.by_decision.get(decision, 0) + 1
    if decision != "admit":
        return
    tally.admitted += 1
    basis = row.get("basis")
    if basis:
        tally.by_basis[str(basis)] = tally.by_basis.get(str(basis), 0) + 1
    if basis == Basis.GRANT.value:
        tally.grant_rows.append(
            {k: row.get(k) for k in ("ordinal", "key", "work_ids", "grant_ids", "evidence")}
        )


# -- step 3 -------------------------------------------------------------------------------------


def _check_snapshot_checkpoint(
    step: AuditStep, manifest: Mapping[str, Any], operator: Verifier
) -> Checkpoint | None:
    log_meta = _section(manifest, "log")
    snapshot = _section(manifest, "snapshot")
    note = log_meta.get("checkpoint")
    if not isinstance(note, str):
        step.fail("the manifest carries no checkpoint")
        return None
    if log_meta.get("operator_vkey") != operator.to_vkey():
        step.fail(
            f"the snapshot is from another origin/operator: the manifest names"
            f" {log_meta.get('operator_vkey')!r}, the operator key is {operator.to_vkey()}"
        )
    checkpoint: Checkpoint | None = None
    try:
        checkpoint = open_checkpoint(note, operator)
    except VerificationError as exc:
        step.fail(f"the checkpoint does not verify with the operator key: {exc}")
        checkpoint = _unverified_checkpoint(note)
        if checkpoint is not None:
            step.notes.append("step 4 ran against the unverified checkpoint")
    if checkpoint is not None:
        if checkpoint.size != log_meta.get("checkpoint_size"):
            step.fail(
                f"the checkpoint is for size {checkpoint.size}, the manifest says"
                f" {log_meta.get('checkpoint_size')}"
            )
        if checkpoint.origin != log_meta.get("origin"):
            step.fail(
                f"the checkpoint is from {checkpoint.origin!r}, not {log_meta.get('origin')!r}"
            )
    try:
        open_statement(
            str(snapshot.get("signature", "")),
            operator,
            SNAPSHOT_STATEMENT,
            str(snapshot.get("id")),
        )
    except VerificationError as exc:
        step.fail(f"the snapshot's signature does not verify with the operator key: {exc}")
    if snapshot.get("operator_key_pinned") is not True:
        step.fail("the gate did not pin the operator key (--trust-snapshot-key was used)")
    if not step.problems and checkpoint is not None:
        step.notes.append(f"checkpoint of {checkpoint.origin} at size {checkpoint.size}")
    return checkpoint


def _unverified_checkpoint(note: str) -> Checkpoint | None:
    text = note[: note.rfind("\n\n") + 1] if "\n\n" in note else ""
    try:
        return Checkpoint.parse(text)
    except VerificationError:
        return None


# -- step 4 -------------------------------------------------------------------------------------


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


@dataclass
class _Evidence:
    """The verified events of one grant or work (``None``: they did not all verify)."""

    events: list[tuple[LoggedEvent, dict[str, Any]]] | None


def _verified_events(
    step: AuditStep, label: str, raw: Any, checkpoint: Checkpoint | None, subjects: set[str] | None
) -> _Evidence:
    if not isinstance(raw, dict) or not isinstance(raw.get("events"), list):
        step.fail(f"{label}: the manifest carries no events")
        return _Evidence(None)
    out: list[tuple[LoggedEvent, dict[str, Any]]] = []
    ok = True
    for value in raw["events"]:
        try:
            event = LoggedEvent.from_json(value)
            if checkpoint is None:
                raise VerificationError("no checkpoint to verify against")
            body = verify_logged_event(event, checkpoint)
        except VerificationError as exc:
            step.fail(f"{label}: {exc}")
            ok = False
            continue
        if subjects is not None and event.subject not in subjects:
            step.fail(f"{label}: log index {event.index} is about {event.subject}")
            ok = False
            continue
        out.append((event, body))
    return _Evidence(out if ok else None)


def _check_grants(
    step: AuditStep,
    manifest: Mapping[str, Any],
    rows: Sequence[dict[str, Any]],
    checkpoint: Checkpoint | None,
) -> None:
    policy = _section(manifest, "policy")
    at = _parse_time(policy.get("at"))
    licensee, purpose = policy.get("licensee"), policy.get("purpose")
    if at is None or not isinstance(licensee, str) or not isinstance(purpose, str):
        step.fail("the manifest's policy has no licensee, purpose and time")
        return
    grants, works = _section(manifest, "grants"), _section(manifest, "works")
    grant_cache: dict[str, _Evidence] = {}
    work_cache: dict[str, _Evidence] = {}
    pairs: dict[tuple[str, str], list[str]] = {}
    void_works: dict[str, list[str]] = {}
    for row in rows:
        label = f"item {row.get('ordinal')} ({row.get('key')})"
        try:
            evidence = json.loads(str(row.get("evidence")))
        except ValueError:
            step.fail(f"{label}: its evidence is not JSON")
            continue
        covered: set[str] = set()
        for entry in evidence if isinstance(evidence, list) else []:
            if not isinstance(entry, dict):
                continue
            work_id, grant_id = entry.get("work_id"), entry.get("grant_id")
            if entry.get("reason") == "grant-in-force" and work_id and grant_id:
                pairs.setdefault((str(grant_id), str(work_id)), []).append(label)
                covered.add(str(work_id))
            elif entry.get("reason") == "work-void" and work_id:
                void_works.setdefault(str(work_id), []).append(label)
                covered.add(str(work_id))
        if not covered:
            step.fail(f"{label}: admitted by grant, but its evidence names no grant in force")
        for work_id in row.get("work_ids") or []:
            if work_id not in covered:
                step.fail(f"{label}: matched {work_id}, which no grant in force covers")
    for (grant_id, work_id), labels in sorted(pairs.items()):
        where = f"{grant_id} for {work_id} ({len(labels)} item(s), first {labels[0]})"
        if grant_id not in grants:
            step.fail(f"{where}: the grant is not in the manifest's grants")
            continue
        if work_id not in works:
            step.fail(f"{where}: the work is not in the manifest's works")
            continue
        if grant_id not in grant_cache:
            grant_cache[grant_id] = _verified_events(
                step, f"grant {grant_id}", grants[grant_id], checkpoint, {grant_id}
            )
        if work_id not in work_cache:
            work_cache[work_id] = _verified_events(
                step, f"work {work_id}", works[work_id], checkpoint, None
            )
        grant_events, work_events = grant_cache[grant_id].events, work_cache[work_id].events
        if grant_events is None or work_events is None:
            step.fail(f"{where}: not judged, its logged events do not all verify")
            continue
        for reason in _not_in_force(grant_events, work_events, work_id, licensee, purpose, at):
            step.fail(f"{where}: {reason}")
    for work_id, labels in sorted(void_works.items()):
        if work_id not in works:
            step.fail(f"{work_id} ({labels[0]}): treated as void, but not in the manifest's works")
            continue
        if work_id not in work_cache:
            work_cache[work_id] = _verified_events(
                step, f"work {work_id}", works[work_id], checkpoint, None
            )
        events = work_cache[work_id].events or []
        if not any(e.kind == "dispute.resolve" and b.get("voided") == work_id for e, b in events):
            step.fail(
                f"{work_id} ({labels[0]}): treated as void, but no logged resolution voids it"
            )
    if not step.problems:
        step.notes.append(
            f"{len(rows)} item(s) admitted by grant; {len(pairs)} grant/work pair(s) in force"
        )


def _not_in_force(
    grant_events: Sequence[tuple[LoggedEvent, dict[str, Any]]],
    work_events: Sequence[tuple[LoggedEvent, dict[str, Any]]],
    work_id: str,
    licensee: str,
    purpose: str,
    at: datetime,
) -> list[str]:
    """Every reason the logged events say the grant did not admit the work at ``at``."""
    why: list[str] = []
    creates = [b for e, b in grant_events if e.kind == "grant.create"]
    registers = [b for e, b in work_events if e.kind == "work.register" and e.subject == work_id]
    if len(creates) != 1:
        return [f"{len(creates)} grant.create events logged, expected 1"]
    if len(registers) != 1:
        return [f"{len(registers)} work.register events of {work_id} logged, expected 1"]
    grant, work = creates[0], registers[0]
    created, registered = _parse_time(grant.get("at")), _parse_time(work.get("at"))
    if created is None or registered is None:
        return ["the logged events carry no valid times"]
    holders = [str(h.get("party")) for h in work.get("holders", []) if isinstance(h, dict)]
    # Terms of the grant.
    if grant.get("licensee") != licensee:
        why.append(f"the grant is for licensee {grant.get('licensee')}, not {licensee}")
    if purpose not in (grant.get("purposes") or []):
        why.append(f"the grant does not cover purpose {purpose}")
    if created > at:
        why.append(f"the grant was created at {created.isoformat()}, after the gate time")
    not_before, expires = _parse_time(grant.get("not_before")), _parse_time(grant.get("expires"))
    if not_before is not None and at < not_before:
        why.append(f"the grant is valid only from {not_before.isoformat()}")
    if expires is not None and at >= expires:
        why.append(f"the grant expired at {expires.isoformat()}")
    # Scope: the work is listed, or in the grantor's catalogue.
    catalogue = grant.get("catalogue")
    in_catalogue = (
        catalogue is not None
        and catalogue in holders
        and (grant.get("include_future") is True or registered <= created)
    )
    if work_id not in (grant.get("works") or []) and not in_catalogue:
        why.append(f"the grant does not cover {work_id}")
    # Agreement of every holder by `at` (the grantor agrees by granting).
    agreed = {str(grant.get("grantor")): created}
    for event, body in grant_events:
        when = _parse_time(body.get("at"))
        if event.kind == "grant.agree" and when is not None:
            party = str(body.get("party"))
            agreed[party] = min(when, agreed.get(party, when))
    missing = sorted(h for h in holders if h not in agreed or agreed[h] > at)
    if not holders:
        why.append(f"{work_id} has no holders to agree")
    elif missing:
        why.append(f"not agreed by {', '.join(missing)} at the gate time")
    # Revocation.
    for event, body in grant_events:
        effective = _parse_time(body.get("effective"))
        if event.kind == "grant.revoke" and (effective is None or effective <= at):
            since = effective.isoformat() if effective else "an unknown time"
            why.append(f"revoked with effect from {since} (index {event.index})")
    # Disputes and reservations on the work.
    why += _blocks(work_events, work_id, holders, purpose, at)
    return why


def _blocks(
    work_events: Sequence[tuple[LoggedEvent, dict[str, Any]]],
    work_id: str,
    holders: Sequence[str],
    purpose: str,
    at: datetime,
) -> list[str]:
    opened: dict[str, datetime | None] = {}
    ended: dict[str, datetime | None] = {}
    reserved: dict[str, tuple[datetime | None, dict[str, Any]]] = {}
    for event, body in work_events:
        when = _parse_time(body.get("at"))
        if event.kind == "dispute.open" and work_id in (body.get("works") or []):
            opened[event.subject] = when
        elif event.kind in ("dispute.resolve", "reservation.lift"):
            ended[event.subject] = when
        elif event.kind == "reservation.create":
            reserved[event.subject] = (when, body)
    why: list[str] = []
    for dispute_id, start in sorted(opened.items()):
        end = ended.get(dispute_id)
        if start is not None and start <= at and (end is None or at < end):
            why.append(f"{work_id} was in open dispute {dispute_id} at the gate time")
    for reservation_id, (start, body) in sorted(reserved.items()):
        applies = body.get("work") == work_id or (
            body.get("work") is None and body.get("by") in holders
        )
        end = ended.get(reservation_id)
        active = start is not None and start <= at and (end is None or at < end)
        if applies and active and purpose in (body.get("purposes") or []):
            why.append(f"{body.get('by')} reserved {purpose} ({reservation_id}) at the gate time")
    return why


# -- step 5 -------------------------------------------------------------------------------------


def _check_newer(
    step: AuditStep,
    manifest: Mapping[str, Any],
    operator: Verifier,
    checkpoint: Checkpoint | None,
    registry: RegistryState | None,
    newer_note: str | None,
) -> None:
    if checkpoint is None:
        step.fail("no checkpoint in the manifest to compare with")
        return
    if registry is not None:
        _check_registry(step, manifest, operator, checkpoint, registry)
    elif newer_note is not None:
        try:
            newer = open_checkpoint(newer_note, operator)
        except VerificationError as exc:
            step.fail(f"the newer checkpoint does not verify with the operator key: {exc}")
            return
        if newer.size < checkpoint.size:
            step.fail(
                f"the newer checkpoint has size {newer.size}, smaller than the manifest's"
                f" {checkpoint.size}"
            )
        elif newer.size == checkpoint.size:
            if not hmac.compare_digest(newer.root_hash, checkpoint.root_hash):
                step.fail(f"two checkpoints of size {newer.size} with different roots (a fork)")
            else:
                step.notes.append("the newer checkpoint is the manifest's")
        else:
            step.skipped = True
            step.notes.append(
                f"the newer checkpoint (size {newer.size}) verifies, but its consistency with"
                f" the manifest's (size {checkpoint.size}) needs the registry: give --log HOME"
            )
    else:
        step.skipped = True
        step.notes.append(
            "no newer view of the log given (--log HOME or --checkpoint FILE): consistency with"
            " the registry's current log not checked"
        )


def _check_registry(
    step: AuditStep,
    manifest: Mapping[str, Any],
    operator: Verifier,
    checkpoint: Checkpoint,
    registry: RegistryState,
) -> None:
    # a. The same log.
    if registry.origin != checkpoint.origin:
        step.fail(f"the registry's log is {registry.origin!r}, not {checkpoint.origin!r}")
        return
    # b. Its latest checkpoint verifies and is consistent with the manifest's.
    if registry.latest_note is None:
        step.fail("the registry has no checkpoint")
        return
    try:
        latest = open_checkpoint(registry.latest_note, operator)
    except VerificationError as exc:
        step.fail(f"the registry's latest checkpoint does not verify: {exc}")
        return
    if latest.size < checkpoint.size:
        step.fail(f"the registry's latest checkpoint ({latest.size}) is older than the manifest's")
    elif latest.size == checkpoint.size:
        if not hmac.compare_digest(latest.root_hash, checkpoint.root_hash):
            step.fail(f"two checkpoints of size {latest.size} with different roots (a fork)")
    else:
        try:
            merkle.verify_consistency(
                checkpoint.size,
                latest.size,
                checkpoint.root_hash,
                latest.root_hash,
                registry.consistency,
            )
        except VerificationError as exc:
            step.fail(
                f"the registry's checkpoint of size {latest.size} is not consistent with the"
                f" manifest's of size {checkpoint.size} ({exc}): the log was rewritten"
            )
    # c. The registry's log verifies against its journal.
    for problem in registry.log_problems:
        step.fail(f"the registry's log does not verify: {problem}")
    # d. The manifest's events are the registry's, and none is missing.
    by_index = {e.index: e for e in registry.events}
    shown: dict[int, LoggedEvent] = {}
    for section in ("grants", "works"):
        for ident, entry in _section(manifest, section).items():
            for value in entry.get("events", []) if isinstance(entry, dict) else []:
                try:
                    event = LoggedEvent.from_json(value)
                except VerificationError as exc:
                    step.fail(f"{ident}: {exc}")
                    continue
                shown[event.index] = event
                stored = by_index.get(event.index)
                if stored is None or stored.payload != event.payload:
                    step.fail(
                        f"log index {event.index} ({event.kind} {event.subject}): the registry's"
                        " event differs from the manifest's (the log or the manifest was"
                        " rewritten)"
                    )
    grant_works = {
        g: [str(w) for w in (e.get("works") or [])]
        for g, e in _section(manifest, "grants").items()
        if isinstance(e, dict)
    }
    other = [
        w for w in _section(manifest, "works") if not any(w in v for v in grant_works.values())
    ]
    before = [e for e in registry.events if e.index < checkpoint.size]
    grants, works = related_events(before, grant_works, other)
    for ident, events in [*grants.items(), *works.items()]:
        for event in events:
            if event.index not in shown:
                step.fail(
                    f"{ident}: log index {event.index} ({event.kind} {event.subject}) is in the"
                    " log but missing from the manifest"
                )
    # e. Nothing recorded after the checkpoint takes effect before the gate time.
    _check_backdating(step, manifest, registry.events, checkpoint, grant_works, other)
    if not step.problems:
        step.notes.append(
            f"the registry's checkpoint of size {latest.size} is consistent with the manifest's"
            f" of size {checkpoint.size}"
        )


def _check_backdating(
    step: AuditStep,
    manifest: Mapping[str, Any],
    events: Iterable[LoggedEvent],
    checkpoint: Checkpoint,
    grant_works: Mapping[str, Sequence[str]],
    other: Sequence[str],
) -> None:
    at = _parse_time(_section(manifest, "policy").get("at"))
    exported = _parse_time(_section(manifest, "snapshot").get("created_at"))
    if at is None:
        return
    grants, works = related_events(events, grant_works, other)
    later = {
        e.index: e
        for group in (*grants.values(), *works.values())
        for e in group
        if e.index >= checkpoint.size and e.kind in _BLOCKING_KINDS
    }
    for index in sorted(later):
        event = later[index]
        body = event.body()
        effect = _parse_time(body.get("effective") or body.get("at"))
        if effect is None or effect > at:
            continue
        if exported is not None and effect < exported:
            what = "is backdated: it claims effect before the snapshot was exported"
        else:
            what = "was recorded after the snapshot and takes effect before the gate time"
        step.fail(
            f"log index {index} ({event.kind} {event.subject}, effective {effect.isoformat()})"
            f" {what}"
        )


# --- the HTML certification report ------------------------------------------------------------

_CSS = """
body{font:15px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:60rem;color:#222;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}.muted{color:#666}
.verdict{font-size:1.4rem;font-weight:700;padding:.8rem 1rem;border-radius:6px;margin:1rem 0}
.certified{background:#e3f6e8;color:#0b6b2e}.not-certified{background:#fde8e8;color:#9b1c1c}
.incomplete{background:#fff6db;color:#7a5a00}
table{border-collapse:collapse;width:100%;margin:.5rem 0 1.5rem}
th,td{text-align:left;border-bottom:1px solid #ddd;padding:.35rem .5rem;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:#0b6b2e;font-weight:600}.fail{color:#9b1c1c;font-weight:600}
.skipped{color:#7a5a00;font-weight:600}code{font-size:.9em;word-break:break-all}
li{margin:.2rem 0}
"""


def render_audit_html(report: AuditReport) -> str:
    """A self-contained certification page (inline CSS, no scripts, every value escaped)."""
    e = html.escape
    verdict_class = report.verdict.replace(" ", "-")
    policy = report.policy
    rows = "".join(
        f"<tr><td>{e(b['basis'])}</td><td class=num>{b['items']}</td>"
        f"<td class=num>{b['of_admitted']:.1%}</td><td class=num>{b['of_items']:.1%}</td></tr>"
        for b in report.basis_fractions()
    )
    steps = "".join(
        f"<tr><td class=num>{s.number}</td><td>{e(s.name)}</td>"
        f"<td class={e(s.status)}>{e(s.status)}</td><td>"
        + "<br>".join(e(m) for m in [*s.problems, *s.notes])
        + "</td></tr>"
        for s in report.steps
    )
    problems = (
        "<ol>" + "".join(f"<li>{e(p)}</li>" for p in report.problems) + "</ol>"
        if report.problems
        else "<p>None found.</p>"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Consentry audit: {e(report.verdict)}</title><style>{_CSS}</style></head>
<body>
<h1>Training-data certification report</h1>
<p class=muted>In the spirit of Fairly Trained's "Licensed Model" certification: every item
admitted for training must be covered by a licence the rights holders agreed to, or by a
basis the policy names; the registry's tamper-evident log is the evidence.</p>
<div class="verdict {e(verdict_class)}">Verdict: {e(report.verdict)}</div>
<table>
<tr><th>manifest</th><td><code>{e(str(report.manifest_path))}</code></td></tr>
<tr><th>licensee / purpose</th><td>{e(str(policy.get("licensee")))} /
{e(str(policy.get("purpose")))}</td></tr>
<tr><th>gate time</th><td>{e(str(policy.get("at")))}</td></tr>
<tr><th>snapshot</th><td><code>{e(report.snapshot_id)}</code></td></tr>
<tr><th>log</th><td><code>{e(report.origin)}</code> at size {report.checkpoint_size}</td></tr>
<tr><th>items</th><td>{report.items} decided, {report.admitted} admitted</td></tr>
</table>
<h2>Admitted items by basis</h2>
<table><tr><th>basis</th><th>items</th><th>of admitted</th><th>of all items</th></tr>
{rows}</table>
<h2>Checks</h2>
<table><tr><th>#</th><th>check</th><th>result</th><th>details</th></tr>{steps}</table>
<h2>Problems found</h2>
{problems}
</body></html>
"""
