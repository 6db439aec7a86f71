"""Every RegistryService mutation, on every backend: what it changes, what it refuses, and the
one journal event each change writes (RFC 8785 canonical JSON, no names or e-mail addresses)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import pytest
import rfc8785
from sqlalchemy import func, inspect, select, table

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
from consentry.errors import (
    ConflictError,
    ConsentryError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
)
from consentry.fingerprint import fingerprint_all
from consentry.registry.service import GrantSpec, HolderSpec, PreparedWork, RegistryService
from consentry.store.database import Database
from consentry.store.tables import (
    AgreementRow,
    EventRow,
    FingerprintRow,
    PartyRow,
    WorkHolderRow,
    WorkRow,
)

T = TypeVar("T")
START = datetime(2030, 3, 1, 9, 30, tzinfo=UTC)
TRAIN = frozenset({Purpose("train-genai")})
SEARCH = frozenset({Purpose("search")})


class Clock:
    """A deterministic clock: every call returns the current value; tests move it on."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@dataclass(frozen=True)
class Event:
    seq: int
    kind: str
    subject: str
    at: datetime
    payload: str

    @property
    def body(self) -> dict[str, Any]:
        value = json.loads(self.payload)
        assert isinstance(value, dict)
        return value


class Registry:
    """The `db` fixture plus helpers that check the journal after each mutation."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    def events(self, after: int = 0) -> list[Event]:
        with self.db.read() as session:
            rows = session.execute(
                select(EventRow.seq, EventRow.kind, EventRow.subject, EventRow.at, EventRow.payload)
                .where(EventRow.seq > after)
                .order_by(EventRow.seq)
            ).all()
        return [Event(*row) for row in rows]

    def last_seq(self) -> int:
        with self.db.read() as session:
            return session.scalar(select(func.coalesce(func.max(EventRow.seq), 0))) or 0

    def counts(self) -> dict[str, int]:
        with self.db.read() as session:
            names = inspect(session.connection()).get_table_names()
            return {
                name: session.scalar(select(func.count()).select_from(table(name))) or 0
                for name in names
            }

    def private_strings(self) -> list[str]:
        with self.db.read() as session:
            rows = session.execute(select(PartyRow.name, PartyRow.email)).all()
        return [v for row in rows for v in row if v]

    def do(
        self, action: Callable[[RegistryService], T], *kinds: str, subject: str | None = None
    ) -> tuple[T, list[Event]]:
        """Run one mutation in its own transaction; check the events it journalled."""
        before = self.last_seq()
        with self.db.write() as session:
            result = action(RegistryService(session, clock=self.clock))
        new = self.events(before)
        assert [e.kind for e in new] == list(kinds)
        assert [e.seq for e in new] == list(range(before + 1, before + 1 + len(new)))
        private = self.private_strings()
        for event in new:
            body = event.body
            # Canonical: re-encoding the parsed payload gives back the very same bytes.
            assert rfc8785.dumps(body).decode("utf-8") == event.payload
            assert body["kind"] == event.kind
            assert body["subject"] == event.subject
            assert body["at"] == self.clock.now.isoformat()
            assert event.at == self.clock.now
            assert "@" not in event.payload
            for value in private:
                assert value not in event.payload, f"{value!r} leaked into {event.kind}"
                # Nor an unsalted hash of it, which a dictionary would reverse.
                for digest in (hashlib.sha256, hashlib.blake2b):
                    assert digest(value.encode()).hexdigest() not in event.payload
        if subject is not None:
            assert new[0].subject == subject
        return result, new

    def refuse(
        self, error: type[ConsentryError], match: str, action: Callable[[RegistryService], Any]
    ) -> ConsentryError:
        """The mutation raises ``error`` and leaves every table as it was."""
        before = self.counts()
        with pytest.raises(error, match=match) as info, self.db.write() as session:
            action(RegistryService(session, clock=self.clock))
        assert self.counts() == before
        return info.value

    # -- small factories -------------------------------------------------------------------

    def party(
        self, name: str, kind: PartyKind = PartyKind.PERSON, email: str | None = None
    ) -> Party:
        return self.do(lambda s: s.add_party(name, email, kind), "party.add")[0]

    def operator(self, name: str = "Registry Operator Orla") -> Party:
        p = self.party(name, PartyKind.ORGANISATION)
        return self.do(lambda s: s.verify_party(p.id, VerificationLevel.OPERATOR), "party.verify")[
            0
        ]

    def work(self, data: bytes, *holders: str, shares: tuple[str, ...] = ()) -> Work:
        specs = [
            HolderSpec(h, share=Decimal(shares[i]) if shares else None)
            for i, h in enumerate(holders)
        ]
        reg, _ = self.do(lambda s: s.register_work(prepared(data), specs), "work.register")
        return reg.work

    def grant(self, spec: GrantSpec) -> Grant:
        return self.do(lambda s: s.create_grant(spec), "grant.create")[0]


def prepared(data: bytes, title: str = "A Work") -> PreparedWork:
    return PreparedWork(
        title=title,
        media_type=MediaType.TEXT,
        size_bytes=len(data),
        fingerprints=tuple(fingerprint_all(data, "text")),
    )


@dataclass
class Cast:
    """Ann (a person, with e-mail) and Bo Press co-hold W1; Lumen Lab is a would-be licensee."""

    ann: Party
    bo: Party
    lab: Party
    w1: Work


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def reg(db: Database, clock: Clock) -> Registry:
    return Registry(db, clock)


@pytest.fixture
def cast(reg: Registry) -> Cast:
    ann = reg.party("Ann Quillfeather", email="ann.quill@example.org")
    bo = reg.party("Bo Pressworks", PartyKind.ORGANISATION, email="rights@bopress.example")
    lab = reg.party("Lumen Lab", PartyKind.ORGANISATION)
    w1 = reg.work(b"The lighthouse keeper's daughter climbed the stairs.\n", ann.id, bo.id)
    return Cast(ann, bo, lab, w1)


def spec(cast: Cast, **changes: Any) -> GrantSpec:
    base: dict[str, Any] = {
        "by": cast.ann.id,
        "licensee": cast.lab.id,
        "purposes": TRAIN,
        "work_ids": (cast.w1.id,),
    }
    base.update(changes)
    return GrantSpec(**base)


# Each PostgreSQL test pays for a database of its own (a few seconds), so each test below takes
# one mutation through its success path and every refusal, rather than one test per case.

# -- parties -------------------------------------------------------------------------------


def test_add_party(reg: Registry) -> None:
    p, events = reg.do(
        lambda s: s.add_party("  Ann Quillfeather ", " Ann.Quill@Example.ORG ", PartyKind.PERSON),
        "party.add",
        subject="P1",
    )
    assert (p.id, p.name, p.email, p.kind) == (
        "P1",
        "Ann Quillfeather",
        "ann.quill@example.org",
        PartyKind.PERSON,
    )
    assert p.verification is VerificationLevel.UNVERIFIED
    body = events[0].body
    assert (body["kind"], body["subject"], body["at"]) == ("party.add", "P1", START.isoformat())
    assert body["party_kind"] == "person"
    lab = reg.party("Lumen Lab", PartyKind.ORGANISATION)
    assert (lab.email, lab.kind) == (None, PartyKind.ORGANISATION)

    for email in ["not-an-address", "a@b", "two@@example.org", "sp ace@example.org"]:
        reg.refuse(
            InvalidInputError,
            "invalid e-mail",
            lambda s, e=email: s.add_party("Bo", e, PartyKind.PERSON),
        )
    error = reg.refuse(
        ConflictError,
        "already uses that e-mail",
        lambda s: s.add_party("Impostor", "ANN.quill@example.org ", PartyKind.PERSON),
    )
    assert p.id in str(error)
    for name in ["", "   ", "\t\n"]:
        reg.refuse(
            InvalidInputError,
            "non-empty name",
            lambda s, n=name: s.add_party(n, None, PartyKind.PERSON),
        )
    reg.refuse(InvalidInputError, "500", lambda s: s.add_party("x" * 501, None, PartyKind.PERSON))


def test_verify_party(reg: Registry) -> None:
    ann = reg.party("Ann Quillfeather", email="ann@example.org")
    p, events = reg.do(
        lambda s: s.verify_party(ann.id, VerificationLevel.EMAIL), "party.verify", subject=ann.id
    )
    assert (p.verification, p.is_registrar) == (VerificationLevel.EMAIL, False)
    assert (events[0].body["level"], events[0].body["registrar"]) == ("email", False)

    guild = reg.party("Writers' Guild", PartyKind.ORGANISATION)
    p, events = reg.do(
        lambda s: s.verify_party(guild.id, VerificationLevel.OPERATOR, registrar=True),
        "party.verify",
    )
    assert (p.verification, p.is_registrar) == (VerificationLevel.OPERATOR, True)
    assert (events[0].body["level"], events[0].body["registrar"]) == ("operator", True)

    org = reg.party("Small Press", PartyKind.ORGANISATION)
    for who, level in [
        (ann.id, VerificationLevel.OPERATOR),  # a person
        (org.id, VerificationLevel.EMAIL),  # not operator-verified
        (org.id, VerificationLevel.UNVERIFIED),
    ]:
        reg.refuse(
            InvalidInputError,
            "registrar",
            lambda s, w=who, lv=level: s.verify_party(w, lv, registrar=True),
        )
    reg.refuse(
        InvalidInputError,
        "party vouch",
        lambda s: s.verify_party(ann.id, VerificationLevel.VOUCHED),
    )
    for ident in ["P99", "W1", "nonsense", "P0"]:
        reg.refuse(
            NotFoundError,
            "party",
            lambda s, i=ident: s.verify_party(i, VerificationLevel.EMAIL),
        )


def test_vouch(reg: Registry) -> None:
    guild = reg.party("Writers' Guild", PartyKind.ORGANISATION)
    reg.do(
        lambda s: s.verify_party(guild.id, VerificationLevel.OPERATOR, registrar=True),
        "party.verify",
    )
    ann = reg.party("Ann Quillfeather")
    p, events = reg.do(lambda s: s.vouch(ann.id, guild.id), "party.vouch", subject=ann.id)
    assert (p.verification, p.vouched_by) == (VerificationLevel.VOUCHED, guild.id)
    assert events[0].body["by"] == guild.id

    plain = reg.operator("Not A Registrar Ltd")  # operator-verified, but not a registrar
    bo = reg.party("Bo")
    error = reg.refuse(PermissionDeniedError, "not a registrar", lambda s: s.vouch(bo.id, plain.id))
    assert plain.id in str(error)
    reg.refuse(PermissionDeniedError, "not a registrar", lambda s: s.vouch(bo.id, ann.id))
    reg.refuse(PermissionDeniedError, "itself", lambda s: s.vouch(guild.id, guild.id))
    # Vouching would lower an operator's verification: refused.
    reg.refuse(ConflictError, "already operator-verified", lambda s: s.vouch(plain.id, guild.id))
    reg.refuse(NotFoundError, "P42", lambda s: s.vouch(ann.id, "P42"))
    reg.refuse(NotFoundError, "P42", lambda s: s.vouch("P42", guild.id))


# -- works ---------------------------------------------------------------------------------


def test_register_work(reg: Registry) -> None:
    ann = reg.party("Ann Quillfeather", email="ann@example.org")
    bo = reg.party("Bo Pressworks", PartyKind.ORGANISATION)
    data = b"Salt Hours: I keep the hours the tide forgets.\n"
    specs = [
        HolderSpec(ann.id, "author", Decimal("60")),
        HolderSpec(bo.id, "publisher", Decimal("40")),
    ]
    result, events = reg.do(lambda s: s.register_work(prepared(data), specs), "work.register")
    work = result.work
    assert result.disputes == ()
    assert (work.title, work.registered_at, work.void) == ("A Work", START, False)
    assert [(h.party_id, h.role, h.share) for h in work.holders] == [
        (ann.id, "author", Decimal("60")),
        (bo.id, "publisher", Decimal("40")),
    ]
    kinds = {f.kind for f in work.fingerprints}
    assert {"sha256", "iscc"} <= kinds
    body = events[0].body
    assert events[0].subject == work.id
    assert body["holders"] == [
        {"party": ann.id, "role": "author", "share": "60"},
        {"party": bo.id, "role": "publisher", "share": "40"},
    ]
    assert {f["kind"] for f in body["fingerprints"]} == kinds
    assert body["media_type"] == "text"
    assert "Salt Hours" not in events[0].payload  # fingerprints only, never the content
    with reg.db.read() as session:
        assert session.scalar(select(WorkRow.registered_by)) == int(ann.id[1:])
        assert session.scalar(select(func.count()).select_from(WorkHolderRow)) == 2
        assert session.scalar(select(func.count()).select_from(FingerprintRow)) == len(
            work.fingerprints
        )


def test_register_work_validates_the_holders(reg: Registry) -> None:
    ann, bo = reg.party("Ann"), reg.party("Bo")

    def register(holders: list[HolderSpec]) -> Callable[[RegistryService], Any]:
        return lambda s: s.register_work(prepared(b"some words\n"), holders)

    reg.refuse(InvalidInputError, "at least one holder", register([]))
    reg.refuse(InvalidInputError, "twice", register([HolderSpec(ann.id), HolderSpec("p1")]))
    for ident in ["P77", "W1", "bogus"]:
        reg.refuse(NotFoundError, "party", register([HolderSpec(ann.id), HolderSpec(ident)]))
    reg.refuse(
        InvalidInputError,
        "every holder",
        register([HolderSpec(ann.id, share=Decimal(100)), HolderSpec(bo.id)]),
    )
    for a, b in [("50", "49.9"), ("60", "60"), ("33.33", "66.66")]:
        reg.refuse(
            InvalidInputError,
            f"add up to {Decimal(a) + Decimal(b)}%",
            register([HolderSpec(ann.id, share=Decimal(a)), HolderSpec(bo.id, share=Decimal(b))]),
        )


def test_register_work_refuses_negative_shares_even_when_they_add_up(reg: Registry) -> None:
    """A share is a percentage of the rights: 110 % and -10 % are not shares, whatever the
    sum. The CLI checks 0 < share <= 100; the service, which the Python API calls, must too."""
    ann, bo = reg.party("Ann"), reg.party("Bo")
    holders = [HolderSpec(ann.id, share=Decimal(110)), HolderSpec(bo.id, share=Decimal(-10))]
    reg.refuse(
        InvalidInputError, "share", lambda s: s.register_work(prepared(b"some words\n"), holders)
    )


def test_registering_the_same_bytes_again(cast: Cast, reg: Registry) -> None:
    data = b"The lighthouse keeper's daughter climbed the stairs.\n"
    # The same holders, in any order and under any title: already registered.
    error = reg.refuse(
        ConflictError,
        f"already registered as {cast.w1.id}",
        lambda s: s.register_work(
            prepared(data, "Another title"), [HolderSpec(cast.bo.id), HolderSpec(cast.ann.id)]
        ),
    )
    assert not isinstance(error, PermissionDeniedError)

    # Other parties: registered all the same, and a dispute is opened with the first claim.
    mallory = reg.party("Mallory Claimant")
    result, events = reg.do(
        lambda s: s.register_work(prepared(data), [HolderSpec(mallory.id)]),
        "work.register",
        "dispute.open",
    )
    assert result.work.id != cast.w1.id
    assert [h.party_id for h in result.work.holders] == [mallory.id]
    (dispute,) = result.disputes
    assert dispute.work_ids == (cast.w1.id, result.work.id)
    assert dispute.resolved_at is None
    assert [e.subject for e in events] == [result.work.id, dispute.id]
    assert events[1].body["works"] == [cast.w1.id, result.work.id]

    # A subset of the holders is another set of parties: a third claim, two more disputes.
    third, events = reg.do(
        lambda s: s.register_work(prepared(data), [HolderSpec(cast.ann.id)]),
        "work.register",
        "dispute.open",
        "dispute.open",
    )
    assert sorted(d.work_ids for d in third.disputes) == [
        (cast.w1.id, third.work.id),
        (result.work.id, third.work.id),
    ]


# -- grants --------------------------------------------------------------------------------


def test_create_grant(cast: Cast, reg: Registry) -> None:
    expires = START + timedelta(days=365)
    g, events = reg.do(
        lambda s: s.create_grant(
            spec(
                cast,
                expires=expires,
                payment=PaymentKind.FLAT,
                amount=Decimal("250.00"),
                currency="EUR",
                terms_text="credit the author",
                min_verification=VerificationLevel.EMAIL,
            )
        ),
        "grant.create",
    )
    assert (g.grantor, g.licensee, g.purposes) == (cast.ann.id, cast.lab.id, TRAIN)
    assert g.work_ids == frozenset({cast.w1.id})
    assert [a.party_id for a in g.agreements] == [cast.ann.id]  # pending: Bo has not agreed
    assert (g.created_at, g.expires, g.revocation) == (START, expires, None)
    assert (g.terms.payment, g.terms.amount, g.terms.currency) == (
        PaymentKind.FLAT,
        Decimal("250.00"),
        "EUR",
    )
    body = events[0].body
    assert events[0].subject == g.id
    assert body["grantor"] == cast.ann.id
    assert body["licensee"] == cast.lab.id
    assert body["works"] == [cast.w1.id]
    assert body["purposes"] == ["train-genai"]
    assert (body["amount"], body["currency"]) == ("250.00", "EUR")
    assert body["expires"] == expires.isoformat()
    assert body["min_verification"] == "email"
    assert body["catalogue"] is None

    # Over the holder's own catalogue.
    g, events = reg.do(
        lambda s: s.create_grant(
            spec(cast, work_ids=(), catalogue_holder=cast.ann.id, include_future=True)
        ),
        "grant.create",
    )
    assert g.catalogue is not None
    assert (g.catalogue.holder_id, g.catalogue.include_future) == (cast.ann.id, True)
    assert g.work_ids == frozenset()
    assert (events[0].body["catalogue"], events[0].body["works"]) == (cast.ann.id, [])


def test_create_grant_refusals(cast: Cast, reg: Registry) -> None:
    def create(**changes: Any) -> Callable[[RegistryService], Any]:
        return lambda s: s.create_grant(spec(cast, **changes))

    error = reg.refuse(PermissionDeniedError, "not a holder", create(by=cast.lab.id))
    assert cast.w1.id in str(error)
    reg.refuse(
        PermissionDeniedError,
        "own catalogue",
        create(work_ids=(), catalogue_holder=cast.bo.id),
    )
    reg.refuse(InvalidInputError, "either", create(catalogue_holder=cast.ann.id))
    reg.refuse(InvalidInputError, "either", create(work_ids=()))
    reg.refuse(InvalidInputError, "purpose", create(purposes=frozenset()))
    for delta in [timedelta(0), timedelta(seconds=-1), timedelta(days=-400)]:
        reg.refuse(InvalidInputError, "in the past", create(expires=START + delta))
    reg.refuse(
        InvalidInputError,
        "after --not-before",
        create(not_before=START + timedelta(days=10), expires=START + timedelta(days=5)),
    )
    flat, per_item, free = PaymentKind.FLAT, PaymentKind.PER_ITEM, PaymentKind.FREE
    for changes, match in [
        ({"payment": flat}, "needs --amount and --currency"),
        ({"payment": per_item, "amount": Decimal(1)}, "needs --amount"),
        ({"payment": flat, "currency": "EUR"}, "needs --amount"),
        ({"payment": free, "amount": Decimal(5), "currency": "EUR"}, "no amount"),
        ({"payment": PaymentKind.ATTRIBUTION, "currency": "EUR"}, "no amount"),
        ({"payment": flat, "amount": Decimal(-1), "currency": "EUR"}, "negative"),
        ({"payment": flat, "amount": Decimal(10), "currency": "euro"}, "ISO 4217"),
        ({"payment": flat, "amount": Decimal(10), "currency": "eur"}, "ISO 4217"),
        ({"payment": flat, "amount": Decimal(10), "currency": "E1R"}, "ISO 4217"),
    ]:
        reg.refuse(InvalidInputError, match, create(**changes))
    for field in ["by", "licensee"]:
        reg.refuse(NotFoundError, "P404", create(**{field: "P404"}))
    reg.refuse(NotFoundError, "W404", create(work_ids=(cast.w1.id, "W404")))

    # A work voided by a dispute grants nothing.
    mallory = reg.party("Mallory Claimant")
    data = b"The lighthouse keeper's daughter climbed the stairs.\n"
    result, _ = reg.do(
        lambda s: s.register_work(prepared(data), [HolderSpec(mallory.id)]),
        "work.register",
        "dispute.open",
    )
    op = reg.operator()
    reg.do(
        lambda s: s.resolve_dispute(
            result.disputes[0].id, op.id, void_work=result.work.id, note="Ann's came first"
        ),
        "dispute.resolve",
    )
    reg.refuse(ConflictError, "voided", create(by=mallory.id, work_ids=(result.work.id,)))


def test_create_grant_refuses_amounts_that_are_not_numbers(cast: Cast, reg: Registry) -> None:
    """Money is a finite number: NaN and infinities are bad input (exit 1), not a crash with
    decimal.InvalidOperation (exit 2), and not a grant for an infinite amount."""
    for amount in ["NaN", "sNaN", "Infinity"]:
        reg.refuse(
            InvalidInputError,
            "amount",
            lambda s, a=amount: s.create_grant(
                spec(cast, payment=PaymentKind.PER_ITEM, amount=Decimal(a), currency="EUR")
            ),
        )


def test_agree(cast: Cast, reg: Registry, clock: Clock) -> None:
    g = reg.grant(spec(cast))
    reg.refuse(PermissionDeniedError, "holds none", lambda s: s.agree(g.id, cast.lab.id))
    # The grantor agreed by granting.
    reg.refuse(ConflictError, "already agreed", lambda s: s.agree(g.id, cast.ann.id))
    later = clock.advance(hours=5)
    agreed, events = reg.do(lambda s: s.agree(g.id, cast.bo.id), "grant.agree", subject=g.id)
    assert {(a.party_id, a.at) for a in agreed.agreements} == {
        (cast.ann.id, START),
        (cast.bo.id, later),
    }
    assert events[0].body["party"] == cast.bo.id
    reg.refuse(ConflictError, "already agreed", lambda s: s.agree(g.id, cast.bo.id))
    with reg.db.read() as session:
        assert session.scalar(select(func.count()).select_from(AgreementRow)) == 2
    for ident in ["G9", "nonsense"]:
        reg.refuse(NotFoundError, "grant", lambda s, i=ident: s.agree(i, cast.bo.id))
    reg.refuse(NotFoundError, "P99", lambda s: s.agree(g.id, "P99"))

    revoked = reg.grant(spec(cast, purposes=SEARCH))
    reg.do(lambda s: s.revoke(revoked.id, cast.ann.id), "grant.revoke")
    reg.refuse(ConflictError, "revoked", lambda s: s.agree(revoked.id, cast.bo.id))


def test_revoke(cast: Cast, reg: Registry, clock: Clock) -> None:
    g = reg.grant(spec(cast))
    reg.refuse(
        PermissionDeniedError,
        "neither the grantor nor a holder",
        lambda s: s.revoke(g.id, cast.lab.id),
    )
    now = clock.advance(days=3)
    revoked, events = reg.do(
        lambda s: s.revoke(g.id, cast.ann.id, reason="changed my mind"),
        "grant.revoke",
        subject=g.id,
    )
    assert revoked.revocation is not None
    assert (revoked.revocation.by, revoked.revocation.at, revoked.revocation.effective) == (
        cast.ann.id,
        now,
        now,
    )
    assert (events[0].body["effective"], events[0].body["reason"]) == (
        now.isoformat(),
        "changed my mind",
    )
    reg.refuse(ConflictError, "already revoked", lambda s: s.revoke(g.id, cast.ann.id))
    reg.refuse(ConflictError, "already revoked", lambda s: s.revoke(g.id, cast.bo.id))

    # Never retroactive: an effective time in the past means now.
    second = reg.grant(spec(cast, purposes=SEARCH))
    now = clock.advance(days=30)
    revoked, events = reg.do(
        lambda s: s.revoke(second.id, cast.ann.id, effective=START - timedelta(days=1)),
        "grant.revoke",
    )
    assert revoked.revocation is not None
    assert revoked.revocation.effective == now
    assert events[0].body["effective"] == now.isoformat()

    # A co-holder may revoke too, with effect later.
    third = reg.grant(spec(cast, purposes=TRAIN | SEARCH))
    later = now + timedelta(days=90)
    revoked, events = reg.do(
        lambda s: s.revoke(third.id, cast.bo.id, effective=later), "grant.revoke"
    )
    assert revoked.revocation is not None
    assert (revoked.revocation.by, revoked.revocation.effective) == (cast.bo.id, later)
    reg.refuse(NotFoundError, "G99", lambda s: s.revoke("G99", cast.ann.id))


# -- reservations --------------------------------------------------------------------------


def test_reserve_and_lift(cast: Cast, reg: Registry, clock: Clock) -> None:
    r, events = reg.do(
        lambda s: s.reserve(cast.bo.id, TRAIN | SEARCH, cast.w1.id), "reservation.create"
    )
    assert isinstance(r, Reservation)
    assert (r.by, r.work_id, r.purposes, r.created_at, r.lifted_at) == (
        cast.bo.id,
        cast.w1.id,
        TRAIN | SEARCH,
        START,
        None,
    )
    assert events[0].subject == r.id
    assert (events[0].body["purposes"], events[0].body["work"]) == (
        ["search", "train-genai"],
        cast.w1.id,
    )
    everything, events = reg.do(lambda s: s.reserve(cast.ann.id, TRAIN, None), "reservation.create")
    assert everything.work_id is None
    assert events[0].body["work"] is None

    reg.refuse(
        PermissionDeniedError, "not a holder", lambda s: s.reserve(cast.lab.id, TRAIN, cast.w1.id)
    )
    reg.refuse(
        InvalidInputError, "purpose", lambda s: s.reserve(cast.ann.id, frozenset(), cast.w1.id)
    )
    reg.refuse(NotFoundError, "W404", lambda s: s.reserve(cast.ann.id, TRAIN, "W404"))

    # Only the party who reserved lifts, even a co-holder of the work cannot.
    reg.refuse(
        PermissionDeniedError, "only the party", lambda s: s.lift_reservation(r.id, cast.ann.id)
    )
    later = clock.advance(minutes=90)
    lifted, events = reg.do(
        lambda s: s.lift_reservation(r.id, cast.bo.id), "reservation.lift", subject=r.id
    )
    assert lifted.lifted_at == later
    assert events[0].body["by"] == cast.bo.id
    reg.refuse(ConflictError, "already lifted", lambda s: s.lift_reservation(r.id, cast.bo.id))
    reg.refuse(NotFoundError, "R9", lambda s: s.lift_reservation("R9", cast.bo.id))


# -- disputes ------------------------------------------------------------------------------


def test_open_and_resolve_disputes(cast: Cast, reg: Registry, clock: Clock) -> None:
    mallory = reg.party("Mallory Claimant")
    rival = reg.work(b"The lighthouse keeper's daughter, a retelling.\n", mallory.id)
    third = reg.work(b"An unrelated poem.\n", cast.lab.id)

    d, events = reg.do(
        lambda s: s.open_dispute(cast.w1.id, rival.id, "a retelling is a copy"), "dispute.open"
    )
    assert isinstance(d, Dispute)
    assert d.work_ids == (cast.w1.id, rival.id)
    assert (d.opened_at, d.resolved_at, d.reason) == (START, None, "a retelling is a copy")
    assert events[0].subject == d.id
    assert events[0].body["works"] == [cast.w1.id, rival.id]
    reg.refuse(
        InvalidInputError, "two different", lambda s: s.open_dispute(cast.w1.id, cast.w1.id, "x")
    )
    reg.refuse(NotFoundError, "W404", lambda s: s.open_dispute(cast.w1.id, "W404", "x"))

    # Only an operator resolves: not the unverified, the e-mail-verified or the vouched.
    def resolve(by: str, void: str | None) -> Callable[[RegistryService], Any]:
        return lambda s: s.resolve_dispute(d.id, by, void_work=void, note="Ann's came first")

    reg.refuse(PermissionDeniedError, "operator", resolve(cast.ann.id, rival.id))
    reg.do(lambda s: s.verify_party(cast.ann.id, VerificationLevel.EMAIL), "party.verify")
    reg.refuse(PermissionDeniedError, "operator", resolve(cast.ann.id, rival.id))
    guild = reg.party("Writers' Guild", PartyKind.ORGANISATION)
    reg.do(
        lambda s: s.verify_party(guild.id, VerificationLevel.OPERATOR, registrar=True),
        "party.verify",
    )
    reg.do(lambda s: s.vouch(cast.ann.id, guild.id), "party.vouch")
    reg.refuse(PermissionDeniedError, "operator", resolve(cast.ann.id, rival.id))

    op = reg.operator()
    error = reg.refuse(InvalidInputError, "not one of the works", resolve(op.id, third.id))
    assert third.id in str(error)
    reg.refuse(
        NotFoundError, "D9", lambda s: s.resolve_dispute("D9", op.id, void_work=None, note="")
    )
    reg.refuse(NotFoundError, "P99", resolve("P99", None))

    later = clock.advance(days=7)
    resolved, events = reg.do(resolve(op.id, rival.id), "dispute.resolve", subject=d.id)
    assert resolved.resolved_at == later
    assert resolved.resolution is not None
    assert rival.id in resolved.resolution
    assert "Ann's came first" in resolved.resolution
    assert (events[0].body["voided"], events[0].body["by"]) == (rival.id, op.id)
    with reg.db.read() as session:
        voids = dict(session.execute(select(WorkRow.id, WorkRow.void)).all())
    assert voids == {int(cast.w1.id[1:]): False, int(rival.id[1:]): True, int(third.id[1:]): False}
    reg.refuse(ConflictError, "already resolved", resolve(op.id, cast.w1.id))

    # Keeping both registrations.
    d2, _ = reg.do(lambda s: s.open_dispute(cast.w1.id, third.id, "similar"), "dispute.open")
    kept, events = reg.do(
        lambda s: s.resolve_dispute(d2.id, op.id, void_work=None, note=""), "dispute.resolve"
    )
    assert kept.resolution == "both registrations stand"
    assert events[0].body["voided"] is None
    with reg.db.read() as session:
        assert session.scalar(select(WorkRow.void).where(WorkRow.id == int(third.id[1:]))) is False


# -- the journal as a whole ----------------------------------------------------------------


def test_every_change_is_journalled_once_in_order(cast: Cast, reg: Registry) -> None:
    """The cast fixture made three parties and a work: four events, consecutive, in order."""
    assert [(e.seq, e.kind, e.subject) for e in reg.events()] == [
        (1, "party.add", cast.ann.id),
        (2, "party.add", cast.bo.id),
        (3, "party.add", cast.lab.id),
        (4, "work.register", cast.w1.id),
    ]
