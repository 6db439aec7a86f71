"""Changing the registry: every method is one consistent change plus its journal event.

Services take an open write session (see :meth:`consentry.store.Database.write`) and never
commit themselves: the caller's transaction decides, so a batch either lands whole or not at
all. Checks that can fail run before anything is written.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from consentry.domain import (
    Dispute,
    Grant,
    MediaType,
    Party,
    PartyKind,
    PaymentKind,
    Purpose,
    Reservation,
    VerificationLevel,
    Work,
)
from consentry.errors import ConflictError, InvalidInputError, PermissionDeniedError
from consentry.fingerprint.base import Fingerprint
from consentry.ledger.log import commit_party
from consentry.registry.events import record_event
from consentry.registry.ids import format_id, parse_id
from consentry.registry.mapping import (
    dispute_from_row,
    get_row,
    load_grants,
    load_party,
    load_works,
    party_from_row,
    purposes_to_text,
    reservation_from_row,
)
from consentry.registry.timeparse import now
from consentry.store.tables import (
    AgreementRow,
    DisputeRow,
    FingerprintRow,
    GrantRow,
    GrantWorkRow,
    IdentifierRow,
    PartyRow,
    ReservationRow,
    RevocationRow,
    WorkHolderRow,
    WorkRow,
)

__all__ = [
    "GrantSpec",
    "HolderSpec",
    "PreparedWork",
    "Registration",
    "RegistryService",
    "fingerprint_lookup",
    "normalise_email",
]

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")


def normalise_email(email: str) -> str:
    value = email.strip().lower()
    if not _EMAIL.match(value) or len(value) > 320:
        raise InvalidInputError(f"invalid e-mail address {email!r}")
    return value


def fingerprint_lookup(value: str) -> str:
    """The indexed key of a fingerprint value: itself when short, else its SHA-256."""
    if len(value) <= 128:
        return value
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class HolderSpec:
    party_id: str
    role: str = "author"
    share: Decimal | None = None


@dataclass(frozen=True, slots=True)
class PreparedWork:
    """A file's fingerprints, computed outside the write transaction (it is CPU work)."""

    title: str
    media_type: MediaType
    size_bytes: int
    fingerprints: tuple[Fingerprint, ...]
    identifiers: tuple[tuple[str, str], ...] = ()
    created_at: datetime | None = None

    def fingerprint(self, kind: str) -> str | None:
        return next((f.value for f in self.fingerprints if f.kind == kind), None)


@dataclass(frozen=True, slots=True)
class Registration:
    work: Work
    disputes: tuple[Dispute, ...] = ()


@dataclass(frozen=True, slots=True)
class GrantSpec:
    by: str
    licensee: str
    purposes: frozenset[Purpose]
    work_ids: tuple[str, ...] = ()
    catalogue_holder: str | None = None
    include_future: bool = False
    not_before: datetime | None = None
    expires: datetime | None = None
    terms_text: str = ""
    payment: PaymentKind = PaymentKind.FREE
    amount: Decimal | None = None
    currency: str | None = None
    min_verification: VerificationLevel = VerificationLevel.UNVERIFIED
    extra: dict[str, str] = field(default_factory=dict)


class RegistryService:
    def __init__(self, session: Session, clock: Callable[[], datetime] = now) -> None:
        self.session = session
        self.clock = clock

    # -- parties -----------------------------------------------------------------------------

    def add_party(self, name: str, email: str | None, kind: PartyKind) -> Party:
        name = name.strip()
        if not name:
            raise InvalidInputError("a party needs a non-empty name")
        if len(name) > 500:
            raise InvalidInputError("party name is longer than 500 characters")
        mail = normalise_email(email) if email else None
        if mail is not None:
            clash = self.session.scalar(select(PartyRow.id).where(PartyRow.email == mail))
            if clash is not None:
                raise ConflictError(
                    f"party {format_id('party', clash)} already uses that e-mail address"
                )
        at = self.clock()
        row = PartyRow(kind=kind.value, name=name, email=mail, verification=0, created_at=at)
        self.session.add(row)
        self.session.flush()
        pid = format_id("party", row.id)
        # Salted commitments, not the name and address: the log is permanent, people may leave.
        commitments = commit_party(self.session, row.id, name, mail)
        record_event(self.session, "party.add", pid, at, {"party_kind": kind.value, **commitments})
        return party_from_row(row)

    def verify_party(
        self, party_id: str, level: VerificationLevel, *, registrar: bool = False
    ) -> Party:
        row = get_row(self.session, PartyRow, "party", party_id)
        if level is VerificationLevel.VOUCHED:
            raise InvalidInputError("use `party vouch` to record a registrar's vouching")
        if registrar and (
            row.kind != PartyKind.ORGANISATION.value or level is not VerificationLevel.OPERATOR
        ):
            raise InvalidInputError(
                "only an organisation verified at operator level can be a registrar"
            )
        row.verification = int(level)
        row.is_registrar = registrar
        row.vouched_by = None
        at = self.clock()
        pid = format_id("party", row.id)
        payload = {"level": level.label, "registrar": registrar}
        record_event(self.session, "party.verify", pid, at, payload)
        return party_from_row(row)

    def vouch(self, party_id: str, by: str) -> Party:
        row = get_row(self.session, PartyRow, "party", party_id)
        registrar = get_row(self.session, PartyRow, "party", by)
        if not registrar.is_registrar:
            raise PermissionDeniedError(
                f"{format_id('party', registrar.id)} is not a registrar; an operator must "
                "verify it with `party verify --level operator --registrar` first"
            )
        if registrar.id == row.id:
            raise PermissionDeniedError("a registrar cannot vouch for itself")
        if row.verification >= VerificationLevel.OPERATOR:
            raise ConflictError(f"{party_id} is already operator-verified")
        row.verification = int(VerificationLevel.VOUCHED)
        row.vouched_by = registrar.id
        pid = format_id("party", row.id)
        payload = {"by": format_id("party", registrar.id)}
        record_event(self.session, "party.vouch", pid, self.clock(), payload)
        return party_from_row(row)

    # -- works -------------------------------------------------------------------------------

    def holder_rows(self, holders: Sequence[HolderSpec]) -> list[tuple[int, HolderSpec]]:
        if not holders:
            raise InvalidInputError("a work needs at least one holder (--holder)")
        numbers = [parse_id("party", h.party_id) for h in holders]
        if len(set(numbers)) != len(numbers):
            raise InvalidInputError("a party is listed twice among the holders")
        for number in numbers:
            get_row(self.session, PartyRow, "party", number)
        shares = [h.share for h in holders]
        for share in shares:
            if share is not None and not (share.is_finite() and Decimal(0) < share <= 100):
                raise InvalidInputError(f"a holder share must be between 0 and 100, not {share}")
        if any(s is not None for s in shares):
            if any(s is None for s in shares):
                raise InvalidInputError("give a share for every holder, or for none")
            total = sum(s for s in shares if s is not None)
            if total != Decimal(100):
                raise InvalidInputError(f"holder shares add up to {total}%, not 100%")
        return list(zip(numbers, holders, strict=True))

    def register_work(self, prepared: PreparedWork, holders: Sequence[HolderSpec]) -> Registration:
        """Register one work; opens a dispute if other parties registered the same bytes."""
        holder_rows = self.holder_rows(holders)
        holder_set = {n for n, _ in holder_rows}
        sha = prepared.fingerprint("sha256")
        same: list[int] = []
        if sha is not None:
            same = list(
                self.session.scalars(
                    select(FingerprintRow.work_id)
                    .join(WorkRow, WorkRow.id == FingerprintRow.work_id)
                    .where(
                        FingerprintRow.kind == "sha256",
                        FingerprintRow.lookup == sha,
                        WorkRow.void.is_(False),
                    )
                    .distinct()
                )
            )
        rivals: list[int] = []
        for other in sorted(same):
            their = set(
                self.session.scalars(
                    select(WorkHolderRow.party_id).where(WorkHolderRow.work_id == other)
                )
            )
            if their == holder_set:
                raise ConflictError(f"already registered as {format_id('work', other)}")
            rivals.append(other)

        at = self.clock()
        row = WorkRow(
            title=prepared.title[:1000],
            media_type=prepared.media_type.value,
            registered_at=at,
            created_at=prepared.created_at,
            registered_by=holder_rows[0][0],
            size_bytes=prepared.size_bytes,
            void=False,
        )
        self.session.add(row)
        self.session.flush()
        for number, spec in holder_rows:
            share = str(spec.share) if spec.share is not None else None
            self.session.add(
                WorkHolderRow(work_id=row.id, party_id=number, role=spec.role, share=share)
            )
        for fp in prepared.fingerprints:
            self.session.add(
                FingerprintRow(
                    work_id=row.id,
                    kind=fp.kind,
                    region=fp.region,
                    value=fp.value,
                    lookup=fingerprint_lookup(fp.value),
                )
            )
        for scheme, value in sorted(set(prepared.identifiers)):
            self.session.add(IdentifierRow(work_id=row.id, scheme=scheme, value=value))
        self.session.flush()
        wid = format_id("work", row.id)
        record_event(
            self.session,
            "work.register",
            wid,
            at,
            {
                "media_type": prepared.media_type.value,
                "holders": [
                    {
                        "party": format_id("party", n),
                        "role": s.role,
                        "share": str(s.share) if s.share is not None else None,
                    }
                    for n, s in holder_rows
                ],
                "fingerprints": [
                    {"kind": f.kind, "region": f.region, "lookup": fingerprint_lookup(f.value)}
                    for f in prepared.fingerprints
                ],
                "identifiers": [list(i) for i in sorted(set(prepared.identifiers))],
            },
        )
        disputes = tuple(
            self.open_dispute(
                format_id("work", other), wid, "the same bytes were registered by other parties"
            )
            for other in rivals
        )
        return Registration(load_works(self.session, [row.id])[0], disputes)

    # -- grants ------------------------------------------------------------------------------

    def _covered_holders(self, grant: GrantRow) -> set[int]:
        """Parties who hold at least one work the grant covers (they may agree or revoke)."""
        work_ids = list(
            self.session.scalars(
                select(GrantWorkRow.work_id).where(GrantWorkRow.grant_id == grant.id)
            )
        )
        query = select(WorkHolderRow.party_id)
        if grant.catalogue_holder is not None:
            catalogue = select(WorkHolderRow.work_id).where(
                WorkHolderRow.party_id == grant.catalogue_holder
            )
            query = query.where(WorkHolderRow.work_id.in_(catalogue))
        else:
            query = query.where(WorkHolderRow.work_id.in_(work_ids))
        holders = set(self.session.scalars(query))
        if grant.catalogue_holder is not None:
            holders.add(grant.catalogue_holder)
        return holders

    def create_grant(self, spec: GrantSpec) -> Grant:
        by = get_row(self.session, PartyRow, "party", spec.by)
        licensee = get_row(self.session, PartyRow, "party", spec.licensee)
        if not spec.purposes:
            raise InvalidInputError("a grant needs at least one purpose (--purpose)")
        if bool(spec.work_ids) == (spec.catalogue_holder is not None):
            raise InvalidInputError("a grant covers either listed works (--work) or a catalogue")
        at = self.clock()
        if spec.expires is not None and spec.expires <= at:
            raise InvalidInputError("--expires is in the past")
        if spec.not_before and spec.expires and spec.expires <= spec.not_before:
            raise InvalidInputError("--expires must be after --not-before")
        self._check_terms(spec)

        work_numbers = sorted({parse_id("work", w) for w in spec.work_ids})
        catalogue: int | None = None
        if spec.catalogue_holder is not None:
            catalogue = get_row(self.session, PartyRow, "party", spec.catalogue_holder).id
            if catalogue != by.id:
                raise PermissionDeniedError("only the holder can grant over its own catalogue")
        for number in work_numbers:
            work = get_row(self.session, WorkRow, "work", number)
            if work.void:
                raise ConflictError(f"{format_id('work', number)} was voided by a dispute")
            holders = set(
                self.session.scalars(
                    select(WorkHolderRow.party_id).where(WorkHolderRow.work_id == number)
                )
            )
            if by.id not in holders:
                raise PermissionDeniedError(
                    f"{format_id('party', by.id)} is not a holder of {format_id('work', number)}"
                )

        row = GrantRow(
            grantor=by.id,
            licensee=licensee.id,
            purposes=purposes_to_text(spec.purposes),
            created_at=at,
            catalogue_holder=catalogue,
            include_future=spec.include_future,
            not_before=spec.not_before,
            expires=spec.expires,
            terms_text=spec.terms_text,
            payment=spec.payment.value,
            amount=str(spec.amount) if spec.amount is not None else None,
            currency=spec.currency,
            min_verification=int(spec.min_verification),
        )
        self.session.add(row)
        self.session.flush()
        for number in work_numbers:
            self.session.add(GrantWorkRow(grant_id=row.id, work_id=number))
        # The grantor agrees by granting; co-holders agree with `grant agree`.
        self.session.add(AgreementRow(grant_id=row.id, party_id=by.id, at=at))
        self.session.flush()
        gid = format_id("grant", row.id)
        record_event(
            self.session,
            "grant.create",
            gid,
            at,
            {
                "grantor": format_id("party", by.id),
                "licensee": format_id("party", licensee.id),
                "purposes": sorted(p.value for p in spec.purposes),
                "works": [format_id("work", n) for n in work_numbers],
                "catalogue": format_id("party", catalogue) if catalogue else None,
                "include_future": spec.include_future,
                "not_before": spec.not_before.isoformat() if spec.not_before else None,
                "expires": spec.expires.isoformat() if spec.expires else None,
                "terms": spec.terms_text,
                "payment": spec.payment.value,
                "amount": str(spec.amount) if spec.amount is not None else None,
                "currency": spec.currency,
                "min_verification": spec.min_verification.label,
            },
        )
        return load_grants(self.session, [row.id])[0]

    @staticmethod
    def _check_terms(spec: GrantSpec) -> None:
        paid = spec.payment in (PaymentKind.FLAT, PaymentKind.PER_ITEM)
        if paid and (spec.amount is None or spec.currency is None):
            raise InvalidInputError(f"payment {spec.payment.value} needs --amount and --currency")
        if not paid and (spec.amount is not None or spec.currency is not None):
            raise InvalidInputError(f"payment {spec.payment.value} takes no amount or currency")
        if spec.amount is not None and (not spec.amount.is_finite() or spec.amount < 0):
            raise InvalidInputError(
                f"--amount must be a finite, non-negative number, not {spec.amount}"
            )
        if spec.currency is not None and not _CURRENCY.match(spec.currency):
            raise InvalidInputError(f"currency {spec.currency!r} is not an ISO 4217 code")

    def agree(self, grant_id: str, by: str) -> Grant:
        grant = get_row(self.session, GrantRow, "grant", grant_id)
        party = get_row(self.session, PartyRow, "party", by)
        gid, pid = format_id("grant", grant.id), format_id("party", party.id)
        if self.session.get(RevocationRow, grant.id) is not None:
            raise ConflictError(f"{gid} was revoked; create a new grant instead")
        if party.id not in self._covered_holders(grant):
            raise PermissionDeniedError(f"{pid} holds none of the works {gid} covers")
        if self.session.get(AgreementRow, (grant.id, party.id)) is not None:
            raise ConflictError(f"{pid} already agreed to {gid}")
        at = self.clock()
        self.session.add(AgreementRow(grant_id=grant.id, party_id=party.id, at=at))
        self.session.flush()
        record_event(self.session, "grant.agree", gid, at, {"party": pid})
        return load_grants(self.session, [grant.id])[0]

    def revoke(
        self, grant_id: str, by: str, *, effective: datetime | None = None, reason: str = ""
    ) -> Grant:
        grant = get_row(self.session, GrantRow, "grant", grant_id)
        party = get_row(self.session, PartyRow, "party", by)
        gid, pid = format_id("grant", grant.id), format_id("party", party.id)
        if party.id != grant.grantor and party.id not in self._covered_holders(grant):
            raise PermissionDeniedError(f"{pid} is neither the grantor nor a holder under {gid}")
        if self.session.get(RevocationRow, grant.id) is not None:
            raise ConflictError(f"{gid} is already revoked")
        at = self.clock()
        # Revocation ends future use only: it cannot take effect before it was recorded.
        when = max(at, effective) if effective is not None else at
        self.session.add(
            RevocationRow(grant_id=grant.id, by=party.id, at=at, effective=when, reason=reason)
        )
        self.session.flush()
        payload = {"by": pid, "effective": when.isoformat(), "reason": reason}
        record_event(self.session, "grant.revoke", gid, at, payload)
        return load_grants(self.session, [grant.id])[0]

    # -- reservations ------------------------------------------------------------------------

    def reserve(self, by: str, purposes: frozenset[Purpose], work_id: str | None) -> Reservation:
        party = get_row(self.session, PartyRow, "party", by)
        if not purposes:
            raise InvalidInputError("a reservation needs at least one purpose (--purpose)")
        work_number: int | None = None
        if work_id is not None:
            work_number = get_row(self.session, WorkRow, "work", work_id).id
            if self.session.get(WorkHolderRow, (work_number, party.id)) is None:
                raise PermissionDeniedError(
                    f"{format_id('party', party.id)} is not a holder of {work_id}"
                )
        at = self.clock()
        row = ReservationRow(
            by=party.id, work_id=work_number, purposes=purposes_to_text(purposes), created_at=at
        )
        self.session.add(row)
        self.session.flush()
        rid = format_id("reservation", row.id)
        payload = {
            "by": format_id("party", party.id),
            "work": format_id("work", work_number) if work_number else None,
            "purposes": sorted(p.value for p in purposes),
        }
        record_event(self.session, "reservation.create", rid, at, payload)
        return reservation_from_row(row)

    def lift_reservation(self, reservation_id: str, by: str) -> Reservation:
        row = get_row(self.session, ReservationRow, "reservation", reservation_id)
        party = get_row(self.session, PartyRow, "party", by)
        rid = format_id("reservation", row.id)
        if row.by != party.id:
            raise PermissionDeniedError(f"only the party who made {rid} can lift it")
        if row.lifted_at is not None:
            raise ConflictError(f"{rid} is already lifted")
        row.lifted_at = self.clock()
        payload = {"by": format_id("party", party.id)}
        record_event(self.session, "reservation.lift", rid, row.lifted_at, payload)
        return reservation_from_row(row)

    # -- disputes ----------------------------------------------------------------------------

    def open_dispute(self, work_a: str, work_b: str, reason: str) -> Dispute:
        a = get_row(self.session, WorkRow, "work", work_a)
        b = get_row(self.session, WorkRow, "work", work_b)
        if a.id == b.id:
            raise InvalidInputError("a dispute needs two different works")
        at = self.clock()
        row = DisputeRow(work_a=a.id, work_b=b.id, opened_at=at, reason=reason)
        self.session.add(row)
        self.session.flush()
        did = format_id("dispute", row.id)
        payload = {"works": [format_id("work", a.id), format_id("work", b.id)], "reason": reason}
        record_event(self.session, "dispute.open", did, at, payload)
        return dispute_from_row(row)

    def resolve_dispute(
        self, dispute_id: str, by: str, *, void_work: str | None, note: str
    ) -> Dispute:
        row = get_row(self.session, DisputeRow, "dispute", dispute_id)
        party = load_party(self.session, by)
        did = format_id("dispute", row.id)
        if party.verification < VerificationLevel.OPERATOR:
            raise PermissionDeniedError("only an operator-verified party can resolve disputes")
        if row.resolved_at is not None:
            raise ConflictError(f"{did} is already resolved")
        voided: str | None = None
        if void_work is not None:
            number = parse_id("work", void_work)
            if number not in (row.work_a, row.work_b):
                raise InvalidInputError(f"{void_work} is not one of the works in {did}")
            get_row(self.session, WorkRow, "work", number).void = True
            voided = format_id("work", number)
        at = self.clock()
        row.resolved_at = at
        row.resolved_by = parse_id("party", party.id)
        outcome = f"voided {voided}" if voided else "both registrations stand"
        row.resolution = f"{outcome}: {note}" if note else outcome
        payload = {"by": party.id, "voided": voided, "resolution": row.resolution}
        record_event(self.session, "dispute.resolve", did, at, payload)
        return dispute_from_row(row)
