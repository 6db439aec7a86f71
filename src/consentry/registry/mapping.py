"""Loading domain values from rows, and building registry views for decisions."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal
from typing import TypeVar

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from consentry.domain import (
    Agreement,
    CatalogueScope,
    Dispute,
    Grant,
    Holder,
    MediaType,
    MemoryRegistryView,
    Party,
    PartyKind,
    PaymentKind,
    Purpose,
    Reservation,
    Revocation,
    Terms,
    VerificationLevel,
    Work,
)
from consentry.errors import NotFoundError
from consentry.fingerprint.base import Fingerprint
from consentry.registry.ids import format_id, parse_id
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

T = TypeVar("T")

__all__ = [
    "build_view",
    "get_row",
    "load_dispute",
    "load_grants",
    "load_party",
    "load_reservation",
    "load_works",
    "purposes_from_text",
    "purposes_to_text",
]


def purposes_to_text(purposes: Iterable[Purpose]) -> str:
    return ",".join(sorted(p.value for p in purposes))


def purposes_from_text(text: str) -> frozenset[Purpose]:
    return frozenset(Purpose(p) for p in text.split(",") if p)


def get_row(session: Session, model: type[T], kind: str, ident: str | int) -> T:
    number = ident if isinstance(ident, int) else parse_id(kind, ident)
    row = session.get(model, number)
    if row is None:
        shown = ident if isinstance(ident, str) else format_id(kind, ident)
        raise NotFoundError(f"no {kind} {shown} in this registry")
    return row


def party_from_row(row: PartyRow) -> Party:
    return Party(
        id=format_id("party", row.id),
        kind=PartyKind(row.kind),
        name=row.name,
        email=row.email,
        verification=VerificationLevel(row.verification),
        vouched_by=format_id("party", row.vouched_by) if row.vouched_by else None,
        is_registrar=row.is_registrar,
    )


def load_party(session: Session, ident: str | int) -> Party:
    return party_from_row(get_row(session, PartyRow, "party", ident))


def load_works(session: Session, numbers: Iterable[int]) -> list[Work]:
    """Works with their holders, fingerprints and identifiers, in id order."""
    wanted = sorted(set(numbers))
    if not wanted:
        return []
    rows = session.scalars(select(WorkRow).where(WorkRow.id.in_(wanted))).all()
    holders: dict[int, list[Holder]] = defaultdict(list)
    for h in session.scalars(
        select(WorkHolderRow)
        .where(WorkHolderRow.work_id.in_(wanted))
        .order_by(WorkHolderRow.work_id, WorkHolderRow.party_id)
    ):
        share = Decimal(h.share) if h.share is not None else None
        holders[h.work_id].append(Holder(format_id("party", h.party_id), h.role, share))
    prints: dict[int, list[Fingerprint]] = defaultdict(list)
    for f in session.scalars(
        select(FingerprintRow).where(FingerprintRow.work_id.in_(wanted)).order_by(FingerprintRow.id)
    ):
        prints[f.work_id].append(Fingerprint(f.kind, f.value, f.region))
    idents: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for i in session.scalars(
        select(IdentifierRow)
        .where(IdentifierRow.work_id.in_(wanted))
        .order_by(IdentifierRow.scheme, IdentifierRow.value)
    ):
        idents[i.work_id].append((i.scheme, i.value))
    return [
        Work(
            id=format_id("work", r.id),
            title=r.title,
            media_type=MediaType(r.media_type),
            registered_at=r.registered_at,
            holders=tuple(holders[r.id]),
            fingerprints=tuple(prints[r.id]),
            identifiers=tuple(idents[r.id]),
            created_at=r.created_at,
            void=r.void,
        )
        for r in sorted(rows, key=lambda r: r.id)
    ]


def load_grants(session: Session, numbers: Iterable[int]) -> list[Grant]:
    wanted = sorted(set(numbers))
    if not wanted:
        return []
    rows = session.scalars(select(GrantRow).where(GrantRow.id.in_(wanted))).all()
    works: dict[int, set[str]] = defaultdict(set)
    for gw in session.scalars(select(GrantWorkRow).where(GrantWorkRow.grant_id.in_(wanted))):
        works[gw.grant_id].add(format_id("work", gw.work_id))
    agreements: dict[int, list[Agreement]] = defaultdict(list)
    for a in session.scalars(
        select(AgreementRow)
        .where(AgreementRow.grant_id.in_(wanted))
        .order_by(AgreementRow.at, AgreementRow.party_id)
    ):
        agreements[a.grant_id].append(Agreement(format_id("party", a.party_id), a.at))
    revocations = {
        r.grant_id: Revocation(format_id("party", r.by), r.at, r.effective, r.reason)
        for r in session.scalars(select(RevocationRow).where(RevocationRow.grant_id.in_(wanted)))
    }
    return [
        Grant(
            id=format_id("grant", r.id),
            grantor=format_id("party", r.grantor),
            licensee=format_id("party", r.licensee),
            purposes=purposes_from_text(r.purposes),
            created_at=r.created_at,
            work_ids=frozenset(works[r.id]),
            catalogue=(
                CatalogueScope(format_id("party", r.catalogue_holder), r.include_future)
                if r.catalogue_holder is not None
                else None
            ),
            not_before=r.not_before,
            expires=r.expires,
            terms=Terms(
                r.terms_text,
                PaymentKind(r.payment),
                Decimal(r.amount) if r.amount is not None else None,
                r.currency,
            ),
            min_verification=VerificationLevel(r.min_verification),
            agreements=tuple(agreements[r.id]),
            revocation=revocations.get(r.id),
        )
        for r in sorted(rows, key=lambda r: r.id)
    ]


def reservation_from_row(r: ReservationRow) -> Reservation:
    return Reservation(
        id=format_id("reservation", r.id),
        by=format_id("party", r.by),
        purposes=purposes_from_text(r.purposes),
        created_at=r.created_at,
        work_id=format_id("work", r.work_id) if r.work_id is not None else None,
        lifted_at=r.lifted_at,
    )


def load_reservation(session: Session, ident: str) -> Reservation:
    return reservation_from_row(get_row(session, ReservationRow, "reservation", ident))


def dispute_from_row(d: DisputeRow) -> Dispute:
    return Dispute(
        id=format_id("dispute", d.id),
        work_ids=(format_id("work", d.work_a), format_id("work", d.work_b)),
        opened_at=d.opened_at,
        reason=d.reason,
        resolved_at=d.resolved_at,
        resolution=d.resolution,
    )


def load_dispute(session: Session, ident: str) -> Dispute:
    return dispute_from_row(get_row(session, DisputeRow, "dispute", ident))


def build_view(session: Session, work_numbers: Iterable[int]) -> MemoryRegistryView:
    """Everything :func:`decide` may need about these works, and nothing else."""
    works = load_works(session, work_numbers)
    wanted = [parse_id("work", w.id) for w in works]
    holder_numbers = {parse_id("party", pid) for w in works for pid in w.holder_ids}
    grant_numbers = set(
        session.scalars(select(GrantWorkRow.grant_id).where(GrantWorkRow.work_id.in_(wanted)))
    )
    grant_numbers |= set(
        session.scalars(
            select(GrantRow.id).where(GrantRow.catalogue_holder.in_(sorted(holder_numbers)))
        )
    )
    parties = session.scalars(select(PartyRow).where(PartyRow.id.in_(sorted(holder_numbers)))).all()
    reservations = session.scalars(
        select(ReservationRow).where(
            or_(
                ReservationRow.work_id.in_(wanted),
                (ReservationRow.work_id.is_(None)) & ReservationRow.by.in_(sorted(holder_numbers)),
            )
        )
    ).all()
    disputes = session.scalars(
        select(DisputeRow).where(or_(DisputeRow.work_a.in_(wanted), DisputeRow.work_b.in_(wanted)))
    ).all()
    return MemoryRegistryView.of(
        works=works,
        parties=[party_from_row(p) for p in parties],
        grants=load_grants(session, grant_numbers),
        reservations=[reservation_from_row(r) for r in reservations],
        disputes=[dispute_from_row(d) for d in disputes],
    )
