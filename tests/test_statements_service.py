"""The statements service on real databases (SQLite files and, when configured, PostgreSQL).

Each test drives :class:`StatementService` as the web layer does and checks what is stored:
outcomes, signature states, tokens, the outbox, counts, the audit trail.
"""

from __future__ import annotations

import io
import json
import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text, update

from consentry.config import RateLimits, ServerSettings, Settings
from consentry.errors import ConflictError, InvalidInputError, NotFoundError
from consentry.statements import (
    InvalidationCondition,
    SignatureState,
    SignOutcome,
    StatementChanges,
    StatementService,
    StatementSpec,
    StatementState,
    TokenError,
)
from consentry.statements.tokens import hash_token
from consentry.store.database import Database
from consentry.store.statement_tables import (
    OperatorActionRow,
    OutboxRow,
    SignatureRow,
    SignatureTokenRow,
    StatementRow,
)
from statements_support import Clock, last_mail, outbox, request, server_settings

SLUG = "open-letter"
ROOMY = RateLimits((1000, 60), (1000, 86400), (1000, 60), (1000, 86400))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def server(settings: Settings) -> ServerSettings:
    return server_settings(settings)


@pytest.fixture
def service(db: Database, server: ServerSettings, clock: Clock) -> StatementService:
    svc = StatementService(db, server, clock)
    svc.create_statement(
        StatementSpec(slug=SLUG, title="No training without consent", text="We, the undersigned."),
        by="orla",
    )
    svc.open_statement(SLUG, by="orla")
    return svc


def signatures(db: Database, **where: object) -> list[SignatureRow]:
    with db.read() as session:
        query = select(SignatureRow).order_by(SignatureRow.id)
        for column, value in where.items():
            query = query.where(getattr(SignatureRow, column) == value)
        rows = list(session.scalars(query))
        session.expunge_all()  # plain objects: the read session rolls back (expires) at the end
        return rows


def actions(db: Database, action: str) -> list[dict[str, object]]:
    with db.read() as session:
        rows = session.scalars(
            select(OperatorActionRow)
            .where(OperatorActionRow.action == action)
            .order_by(OperatorActionRow.id)
        )
        return [{"by": r.operator, **json.loads(r.params)} for r in rows]


def confirm_by_email(service: StatementService, db: Database, email: str) -> int:
    mail = last_mail(db, to=email, kind="confirm")
    assert mail.confirm is not None
    info = service.confirm(mail.confirm)
    assert info.ordinal is not None
    return info.ordinal


# -- signing: the happy path -----------------------------------------------------------------


def test_a_signature_is_pending_with_a_confirmation_e_mail_queued(
    service: StatementService, db: Database
) -> None:
    result = service.sign(request(email="Ann@Example.org", occupation="  novelist "))
    assert (result.outcome, result.errors) == (SignOutcome.ACCEPTED, {})
    (sig,) = signatures(db)
    assert (sig.state, sig.email, sig.email_canonical) == (
        "pending",
        "Ann@example.org",
        "ann@example.org",
    )
    assert (sig.occupation, sig.ordinal, sig.counted) == ("novelist", None, False)
    (mail,) = outbox(db)
    assert (mail.kind, mail.to, mail.state) == ("confirm", "Ann@example.org", "queued")
    assert mail.confirm is not None
    assert mail.withdraw is not None
    info = service.token_info(mail.confirm, "confirm")
    assert (info.slug, info.state, info.ordinal) == (SLUG, SignatureState.PENDING, None)
    assert info.masked_email == "A***@example.org"


def test_confirmation_validates_with_ordinals_in_order_of_confirmation(
    service: StatementService, db: Database
) -> None:
    emails = ["a@example.org", "b@example.org", "c@example.org"]
    results = service.sign_many([request(email=e) for e in emails])
    assert [r.outcome for r in results] == [SignOutcome.ACCEPTED] * 3
    assert confirm_by_email(service, db, "c@example.org") == 1
    assert confirm_by_email(service, db, "a@example.org") == 2
    assert confirm_by_email(service, db, "b@example.org") == 3
    states = {s.email: (s.state, s.ordinal) for s in signatures(db)}
    assert states == {
        "a@example.org": ("validated", 2),
        "b@example.org": ("validated", 3),
        "c@example.org": ("validated", 1),
    }
    thanks = [m for m in outbox(db) if m.kind == "confirmed"]
    assert len(thanks) == 3
    assert all(m.confirm is None and m.withdraw for m in thanks)  # every e-mail: withdraw link


def test_confirmation_links_are_single_use(service: StatementService, db: Database) -> None:
    service.sign(request())
    token = last_mail(db).confirm
    assert token is not None
    assert service.confirm(token).state is SignatureState.VALIDATED
    for call in (lambda: service.confirm(token), lambda: service.token_info(token, "confirm")):
        with pytest.raises(TokenError) as caught:
            call()
        assert caught.value.reason == "used"
    (sig,) = signatures(db)
    assert sig.ordinal == 1


def test_confirmation_links_expire(db: Database, settings: Settings, clock: Clock) -> None:
    server = server_settings(settings, CONSENTRY_CONFIRM_TTL_HOURS="2")
    service = StatementService(db, server, clock)
    service.create_statement(StatementSpec(slug=SLUG, title="T", text="x"), by="orla")
    service.open_statement(SLUG, by="orla")
    service.sign_many([request(email="early@example.org"), request(email="late@example.org")])
    clock.advance(hours=2, seconds=-1)
    assert confirm_by_email(service, db, "early@example.org") == 1
    clock.advance(seconds=1)
    token = last_mail(db, to="late@example.org").confirm
    assert token is not None
    for call in (lambda: service.confirm(token), lambda: service.token_info(token, "confirm")):
        with pytest.raises(TokenError) as caught:
            call()
        assert caught.value.reason == "expired"
    assert [s.state for s in signatures(db, email="late@example.org")] == ["pending"]


@pytest.mark.parametrize(
    "forge",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # one character changed
        lambda t: t[::-1],
        lambda t: "A" * 43,
        lambda t: t + "x",
        lambda t: "",
        lambda t: "../../etc/passwd",
        lambda t: "é" * 43,
        lambda t: "x" * 10_000,
    ],
)
def test_forged_links_are_unknown(service: StatementService, db: Database, forge) -> None:  # type: ignore[no-untyped-def]
    service.sign(request())
    token = last_mail(db).confirm
    assert token is not None
    for call in (
        lambda: service.confirm(forge(token)),
        lambda: service.withdraw(forge(token)),
        lambda: service.token_info(forge(token), "confirm"),
    ):
        with pytest.raises(TokenError) as caught:
            call()
        assert caught.value.reason == "unknown"
    assert [s.state for s in signatures(db)] == ["pending"]


def test_a_link_works_only_for_its_purpose(service: StatementService, db: Database) -> None:
    service.sign(request())
    mail = last_mail(db)
    assert mail.confirm is not None
    assert mail.withdraw is not None
    with pytest.raises(TokenError) as caught:
        service.confirm(mail.withdraw)
    assert caught.value.reason == "unknown"
    with pytest.raises(TokenError):
        service.withdraw(mail.confirm)
    assert isinstance(caught.value, InvalidInputError)


def test_tokens_are_stored_only_as_their_sha256(
    service: StatementService, db: Database, server: ServerSettings
) -> None:
    service.sign(request())
    mail = last_mail(db)
    assert mail.confirm is not None
    assert mail.withdraw is not None
    with db.read() as session:
        hashes = set(session.scalars(select(SignatureTokenRow.token_hash)))
        dump = "\n".join(
            str(row)
            for table in ("signatures", "signature_tokens", "outbox")
            for row in session.execute(text(f"SELECT * FROM {table}"))  # noqa: S608 - fixed names
        )
    assert hashes == {hash_token(mail.confirm), hash_token(mail.withdraw)}
    assert mail.confirm not in dump
    assert mail.withdraw not in dump


# -- every outcome -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"email": "not-an-address"}, "email"),
        ({"email": ""}, "email"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "Ann\x00Author"}, "name"),
        ({"name": "Ann\u2028Author"}, "name"),
        ({"occupation": "y" * 201}, "occupation"),
        ({"country": "z" * 101}, "country"),
        ({"ip": "not-an-ip"}, "ip"),
        ({"ip": "fe80::1%" + "x" * 80}, "ip"),
        ({"slug": "no-such-statement"}, "statement"),
    ],
)
def test_invalid_requests_write_nothing(
    service: StatementService, db: Database, changes: dict[str, str], field: str
) -> None:
    results = service.sign_many([request(**changes), request(email="ok@example.org")])
    assert results[0].outcome is SignOutcome.INVALID
    assert field in results[0].errors
    assert results[1].outcome is SignOutcome.ACCEPTED  # one bad request spoils nothing else
    assert [s.email for s in signatures(db)] == ["ok@example.org"]
    assert service.validate_request(request(**changes)) != {} or field == "statement"


def test_html_in_names_is_stored_as_text_for_the_templates_to_escape(
    service: StatementService, db: Database
) -> None:
    assert service.sign(request(name="<script>alert(1)</script>")).outcome is SignOutcome.ACCEPTED
    assert signatures(db)[0].name == "<script>alert(1)</script>"


def test_required_fields_and_statement_states(
    db: Database, server: ServerSettings, clock: Clock
) -> None:
    service = StatementService(db, server, clock)
    service.create_statement(
        StatementSpec(slug="needs-more", title="T", text="x", required_fields=("occupation",)),
        by="orla",
    )
    draft = service.sign(request("needs-more", occupation="poet"))
    assert (draft.outcome, set(draft.errors)) == (SignOutcome.INVALID, {"statement"})
    service.open_statement("needs-more", by="orla")
    missing = service.sign(request("needs-more"))
    assert missing.errors == {"occupation": "this field is required"}
    assert service.sign(request("needs-more", occupation="poet")).outcome is SignOutcome.ACCEPTED
    service.close_statement("needs-more", by="orla")
    closed = service.sign(request("needs-more", occupation="poet", email="b@example.org"))
    assert set(closed.errors) == {"statement"}
    assert len(signatures(db)) == 1


def test_a_duplicate_is_answered_silently_with_an_already_signed_e_mail(
    service: StatementService, db: Database, clock: Clock
) -> None:
    assert service.sign(request(email="ann.author@gmail.com")).outcome is SignOutcome.ACCEPTED
    again = service.sign(request(email="AnnAuthor+again@googlemail.com", name="Someone Else"))
    assert (again.outcome, again.errors) == (SignOutcome.DUPLICATE, {})
    (sig,) = signatures(db)
    assert sig.name == "Ann Author"  # nothing changed
    notice = last_mail(db, kind="already_signed")
    assert notice.to == "ann.author@gmail.com"  # the signer's own address, not the newcomer's
    assert notice.confirm is not None  # still pending: the notice can confirm it
    assert service.confirm(notice.confirm).ordinal == 1
    # The first confirmation link is now used up as well: one signature, one ordinal.
    with pytest.raises(TokenError):
        service.confirm(last_mail(db, kind="confirm").confirm or "")
    # Once validated, a notice carries no confirmation link; repeats within minutes queue none.
    clock.advance(minutes=20)
    assert service.sign(request(email="annauthor@gmail.com")).outcome is SignOutcome.DUPLICATE
    assert service.sign(request(email="annauthor@gmail.com")).outcome is SignOutcome.DUPLICATE
    notices = [m for m in outbox(db) if m.kind == "already_signed"]
    assert len(notices) == 2
    assert notices[-1].confirm is None
    assert notices[-1].withdraw is not None


def test_duplicates_within_one_batch(service: StatementService, db: Database) -> None:
    results = service.sign_many(
        [
            request(email="x@example.org"),
            request(email="X+1@example.org"),
            request(email="y@example.org"),
        ]
    )
    assert [r.outcome for r in results] == [
        SignOutcome.ACCEPTED,
        SignOutcome.DUPLICATE,
        SignOutcome.ACCEPTED,
    ]
    assert len(signatures(db)) == 2
    assert [m.kind for m in outbox(db)] == ["confirm", "confirm"]


def test_concurrent_writers_cannot_create_duplicates(
    service: StatementService, db: Database
) -> None:
    """Eight threads sign the same address at once: one signature, the rest duplicates."""
    barrier = threading.Barrier(8)
    outcomes: list[SignOutcome] = []
    errors: list[BaseException] = []

    def sign() -> None:
        try:
            barrier.wait()
            outcomes.append(service.sign(request(email="race@example.org")).outcome)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=sign) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(outcomes) == sorted([SignOutcome.ACCEPTED] + [SignOutcome.DUPLICATE] * 7)
    assert len(signatures(db)) == 1


def test_the_unique_index_refuses_a_second_live_signature(
    service: StatementService, db: Database
) -> None:
    service.sign(request(email="one@example.org"))
    (sig,) = signatures(db)
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"), db.write(log=False) as session:
        session.execute(
            text(
                "INSERT INTO signatures (statement_id, state, email_canonical, email_domain, "
                "show_name, ip_key, language, created_at, counted, kind) VALUES "
                "(:s, 'validated', 'one@example.org', 'example.org', false, '1.2.3.4', 'en', "
                ":t, false, 'person')"
            ),
            {"s": sig.statement_id, "t": sig.created_at.replace(tzinfo=None)},
        )


# -- suppressed: bots and floods ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"honeypot": "http://spam.example"}, "honeypot"),
        ({"form_age_seconds": 1.5}, "too-fast"),
        ({"form_age_seconds": -5.0}, "too-fast"),
        ({"form_age_seconds": float("nan")}, "too-fast"),
    ],
)
def test_bots_are_stored_as_fraudulent_without_e_mail(
    service: StatementService, db: Database, changes: dict[str, object], reason: str
) -> None:
    result = service.sign(request(**changes))
    assert (result.outcome, result.errors) == (SignOutcome.SUPPRESSED, {})
    (sig,) = signatures(db)
    assert (sig.state, sig.fraud_reason) == ("fraudulent", reason)
    assert outbox(db) == []
    # A bot's fraudulent row does not block the real owner of the address.
    assert service.sign(request()).outcome is SignOutcome.ACCEPTED


def test_blocklists_match_cidrs_and_subdomains(service: StatementService, db: Database) -> None:
    service.block("ip", "203.0.113.0/24", by="orla", note="botnet")
    service.block("ip", "2001:db8::/32", by="orla")
    service.block("domain", "@Spam.Example", by="orla")
    cases = [
        (request(ip="203.0.113.77", email="a@example.org"), "blocked-ip"),
        (request(ip="2001:db8:1::5", email="b@example.org"), "blocked-ip"),
        (request(ip="::ffff:203.0.113.9", email="c@example.org"), "blocked-ip"),
        (request(email="d@spam.example"), "blocked-domain"),
        (request(email="e@mx.spam.example"), "blocked-domain"),
        (request(ip="203.0.114.1", email="f@example.org"), None),
        (request(email="g@notspam.example"), None),
    ]
    results = service.sign_many([r for r, _ in cases])
    reasons = {s.email: s.fraud_reason for s in signatures(db)}
    for (req, reason), result in zip(cases, results, strict=True):
        expected = SignOutcome.SUPPRESSED if reason else SignOutcome.ACCEPTED
        assert result.outcome is expected, req
        assert reasons[req.email] == reason
    assert service.blocklist()[0][:2] == ("domain", "spam.example")
    service.unblock("domain", "spam.example", by="orla")
    assert service.sign(request(email="h@spam.example")).outcome is SignOutcome.ACCEPTED
    with pytest.raises(NotFoundError):
        service.unblock("domain", "spam.example", by="orla")
    with pytest.raises(InvalidInputError):
        service.block("ip", "300.1.2.3", by="orla")
    assert [a["value"] for a in actions(db, "block")] == [
        "203.0.113.0/24",
        "2001:db8::/32",
        "spam.example",
    ]


def _limited(
    db: Database, server: ServerSettings, clock: Clock, limits: RateLimits
) -> StatementService:
    service = StatementService(db, server, clock)
    service.create_statement(
        StatementSpec(slug="limited", title="T", text="x", rate_limits=limits), by="orla"
    )
    service.open_statement("limited", by="orla")
    return service


def test_ip_burst_limit_across_and_within_batches(
    db: Database, server: ServerSettings, clock: Clock
) -> None:
    service = _limited(db, server, clock, RateLimits(ip_burst=(3, 60), ip_sustained=(100, 86400)))
    ip = "198.51.100.1"
    first = service.sign_many(
        [request("limited", ip=ip, email=f"a{i}@example.org") for i in range(2)]
    )
    second = service.sign_many(
        [request("limited", ip=ip, email=f"b{i}@example.org") for i in range(3)]
    )
    outcomes = [r.outcome for r in first + second]
    assert outcomes == [SignOutcome.ACCEPTED] * 3 + [SignOutcome.SUPPRESSED] * 2
    assert {s.fraud_reason for s in signatures(db, state="fraudulent")} == {"rate-ip-burst"}
    # Another address is not affected; the same one may sign again once the window passed.
    assert service.sign(request("limited", ip="198.51.100.2", email="c@example.org")).outcome is (
        SignOutcome.ACCEPTED
    )
    clock.advance(seconds=61)
    assert service.sign(request("limited", ip=ip, email="d@example.org")).outcome is (
        SignOutcome.ACCEPTED
    )
    assert len(outbox(db)) == 5  # no e-mail for the suppressed two


def test_ip_sustained_limit_counts_a_day(
    db: Database, server: ServerSettings, clock: Clock
) -> None:
    service = _limited(db, server, clock, RateLimits(ip_burst=(10, 60), ip_sustained=(4, 86400)))
    ip = "198.51.100.9"
    outcomes = []
    for i in range(6):
        outcomes.append(service.sign(request("limited", ip=ip, email=f"s{i}@example.org")).outcome)
        clock.advance(minutes=30)
    assert outcomes == [SignOutcome.ACCEPTED] * 4 + [SignOutcome.SUPPRESSED] * 2
    assert {s.fraud_reason for s in signatures(db, state="fraudulent")} == {"rate-ip-sustained"}
    clock.advance(days=1)
    assert service.sign(request("limited", ip=ip, email="later@example.org")).outcome is (
        SignOutcome.ACCEPTED
    )


def test_ipv6_addresses_are_limited_per_64(
    db: Database, server: ServerSettings, clock: Clock
) -> None:
    service = _limited(db, server, clock, RateLimits(ip_burst=(2, 60)))
    results = service.sign_many(
        [
            request("limited", ip="2001:db8:aa:1::1", email="v1@example.org"),
            request("limited", ip="2001:db8:aa:1:ffff::2", email="v2@example.org"),
            request("limited", ip="2001:db8:aa:1:1234::3", email="v3@example.org"),
            request("limited", ip="2001:db8:aa:2::1", email="v4@example.org"),
        ]
    )
    assert [r.outcome for r in results] == [
        SignOutcome.ACCEPTED,
        SignOutcome.ACCEPTED,
        SignOutcome.SUPPRESSED,
        SignOutcome.ACCEPTED,
    ]


def test_domain_limits_burst_and_sustained_with_webmail_exempt(
    db: Database, server: ServerSettings, clock: Clock
) -> None:
    limits = RateLimits(
        ip_burst=(100, 60),
        ip_sustained=(100, 86400),
        domain_burst=(2, 60),
        domain_sustained=(3, 86400),
    )
    service = _limited(db, server, clock, limits)
    burst = service.sign_many([request("limited", email=f"p{i}@corp.example") for i in range(3)])
    assert [r.outcome for r in burst] == [SignOutcome.ACCEPTED] * 2 + [SignOutcome.SUPPRESSED]
    clock.advance(seconds=61)
    later = service.sign_many([request("limited", email=f"q{i}@corp.example") for i in range(2)])
    # The burst window passed, but the day already holds 3 submissions (the suppressed too).
    assert [r.outcome for r in later] == [SignOutcome.SUPPRESSED] * 2
    reasons = [s.fraud_reason for s in signatures(db, state="fraudulent")]
    assert reasons == ["rate-domain-burst", "rate-domain-sustained", "rate-domain-sustained"]
    webmail = service.sign_many([request("limited", email=f"w{i}@gmail.com") for i in range(5)])
    assert [r.outcome for r in webmail] == [SignOutcome.ACCEPTED] * 5


def test_rate_limits_come_from_the_settings_unless_the_statement_has_its_own(
    db: Database, settings: Settings, clock: Clock
) -> None:
    server = server_settings(settings, CONSENTRY_RATE_IP_BURST="1/60")
    service = StatementService(db, server, clock)
    service.create_statement(StatementSpec(slug="strict", title="T", text="x"), by="orla")
    service.create_statement(
        StatementSpec(
            slug="lenient", title="T", text="x", rate_limits=RateLimits(ip_burst=(9, 60))
        ),
        by="orla",
    )
    for slug in ("strict", "lenient"):
        service.open_statement(slug, by="orla")
    ip = "192.0.2.50"
    strict = service.sign_many(
        [request("strict", ip=ip, email=f"s{i}@example.org") for i in range(2)]
    )
    lenient = service.sign_many(
        [request("lenient", ip=ip, email=f"l{i}@example.org") for i in range(2)]
    )
    assert [r.outcome for r in strict] == [SignOutcome.ACCEPTED, SignOutcome.SUPPRESSED]
    assert [r.outcome for r in lenient] == [SignOutcome.ACCEPTED, SignOutcome.ACCEPTED]
    assert service.statement("lenient").rate_limits == RateLimits(ip_burst=(9, 60))
    assert service.statement("strict").rate_limits is None


# -- withdraw and counts ---------------------------------------------------------------------------


def test_withdraw_removes_from_count_and_list_and_the_address_can_sign_again(
    service: StatementService, db: Database
) -> None:
    service.sign_many([request(email="stay@example.org"), request(email="go@example.org")])
    confirm_by_email(service, db, "stay@example.org")
    confirm_by_email(service, db, "go@example.org")
    service.refresh_counts()
    assert service.statement(SLUG).signature_count == 2
    withdraw = last_mail(db, to="go@example.org", kind="confirmed").withdraw
    assert withdraw is not None
    info = service.token_info(withdraw, "withdraw")
    assert (info.state, info.ordinal) == (SignatureState.VALIDATED, 2)
    assert service.withdraw(withdraw).state is SignatureState.INVALIDATED
    with pytest.raises(TokenError) as caught:
        service.withdraw(withdraw)
    assert caught.value.reason == "used"
    assert [p.name for p in service.public_signers(SLUG)] == ["Ann Author"]
    assert service.statement(SLUG).signature_count == 2  # batched: not yet folded
    assert service.refresh_counts() == 1
    assert service.statement(SLUG).signature_count == 1
    (gone,) = [s for s in signatures(db) if s.state == "invalidated"]
    assert (gone.email, gone.name, gone.withdrawn_at is not None) == (None, None, True)
    # Signing again later works: a fresh pending signature with a fresh ordinal on confirming.
    assert service.sign(request(email="go@example.org")).outcome is SignOutcome.ACCEPTED
    assert confirm_by_email(service, db, "go@example.org") == 3


def test_a_pending_signature_can_be_withdrawn_and_its_confirmation_link_dies(
    service: StatementService, db: Database
) -> None:
    service.sign(request())
    mail = last_mail(db)
    assert mail.confirm is not None
    assert mail.withdraw is not None
    service.withdraw(mail.withdraw)
    with pytest.raises(TokenError) as caught:
        service.confirm(mail.confirm)
    assert caught.value.reason == "used"


def test_counts_are_folded_in_batches(service: StatementService, db: Database) -> None:
    service.sign_many([request(email=f"n{i}@example.org") for i in range(5)])
    for i in range(5):
        confirm_by_email(service, db, f"n{i}@example.org")
    view = service.statement(SLUG)
    assert (view.signature_count, view.count_updated_at) == (0, None)
    assert service.refresh_counts() == 5
    view = service.statement(SLUG)
    assert view.signature_count == 5
    assert view.count_updated_at is not None
    assert service.refresh_counts() == 0  # idle: nothing to fold, nothing written
    assert service.statement(SLUG).count_updated_at == view.count_updated_at


def test_recount_fixes_deliberate_drift(service: StatementService, db: Database) -> None:
    service.sign_many([request(email=f"r{i}@example.org") for i in range(4)])
    for i in range(3):
        confirm_by_email(service, db, f"r{i}@example.org")
    service.refresh_counts()
    with db.write(log=False) as session:  # drift: a wrong count and wrong "counted" marks
        session.execute(update(StatementRow).values(signature_count=999))
        session.execute(
            update(SignatureRow).where(SignatureRow.state == "pending").values(counted=True)
        )
    assert service.recount(SLUG, by="orla") == (999, 3)
    assert service.statement(SLUG).signature_count == 3
    assert service.refresh_counts() == 0  # the marks agree with the count again
    assert service.recount(SLUG) == (3, 3)
    assert actions(db, "recount") == [{"by": "orla", "before": 999, "after": 3}]


# -- operators -------------------------------------------------------------------------------------


def test_bulk_invalidation_dry_run_counts_what_the_real_run_changes(
    service: StatementService, db: Database, clock: Clock
) -> None:
    bots = [
        request(ip=f"203.0.113.{i}", email=f"bot{i}@example.org", user_agent="curl/8")
        for i in range(4)
    ]
    humans = [request(email=f"human{i}@example.org") for i in range(3)]
    service.sign_many(bots + humans)
    confirm_by_email(service, db, "bot0@example.org")
    confirm_by_email(service, db, "human0@example.org")
    service.refresh_counts()
    condition = InvalidationCondition(ip="203.0.113.0/24")
    dry = service.invalidate(SLUG, condition, by="orla", dry_run=True)
    assert dry == 4
    assert {s.state for s in signatures(db) if s.email and s.email.startswith("bot")} == {
        "pending",
        "validated",
    }
    real = service.invalidate(SLUG, condition, by="orla", dry_run=False)
    assert real == dry
    assert {s.state for s in signatures(db) if s.email and s.email.startswith("bot")} == {
        "invalidated"
    }
    service.refresh_counts()
    assert service.statement(SLUG).signature_count == 1
    audited = actions(db, "signatures.invalidate")
    assert [(a["dry_run"], a["count"], a["by"]) for a in audited] == [
        (True, 4, "orla"),
        (False, 4, "orla"),
    ]
    assert service.invalidate(SLUG, condition, by="orla", dry_run=True) == 0  # already done
    with pytest.raises(TokenError):  # their links died with them
        service.confirm(last_mail(db, to="bot1@example.org").confirm or "")


def test_invalidation_conditions_combine(
    service: StatementService, db: Database, clock: Clock
) -> None:
    service.sign(request(email="a@lists.corp.example", user_agent="Bot/1.0"))
    clock.advance(hours=1)
    service.sign(request(email="b@corp.example", user_agent="Mozilla"))
    service.sign(request(email="c@other.example", user_agent="Bot/1.0"))
    start = clock.now - timedelta(minutes=1)

    def count(**kw: object) -> int:
        return service.invalidate(SLUG, InvalidationCondition(**kw), by="orla", dry_run=True)  # type: ignore[arg-type]

    assert count(email_domain="corp.example") == 2
    assert count(email_domain="corp.example", user_agent_contains="Bot/") == 1
    assert count(user_agent_contains="Bot/") == 2
    assert count(created_from=start) == 2
    assert count(created_to=start) == 1
    assert count(user_agent_contains="%") == 0  # LIKE wildcards are matched literally
    assert count(email_domain="corp.example", state=SignatureState.VALIDATED) == 0
    with pytest.raises(InvalidInputError, match="at least one condition"):
        count(state=SignatureState.PENDING)
    with pytest.raises(InvalidInputError):
        count(ip="not-an-ip")


def test_every_page_of_the_public_list_is_a_window_of_the_whole_ordered_list(
    service: StatementService, db: Database
) -> None:
    # Pages are read group by group (notables, organisations, then everyone else); any offset
    # and limit must give exactly the matching slice of the whole list, across group borders.
    people = [request(email=f"s{i}@example.org", name=f"Signer {i}") for i in range(7)]
    people += [
        request(email=f"o{i}@guild.example", name=f"Rep {i}", organisation=f"Guild {i}")
        for i in range(2)
    ]
    service.sign_many(people)
    for req in people:
        confirm_by_email(service, db, req.email)
    ids = {s.email: s.id for s in signatures(db)}
    for email in ("s5@example.org", "s1@example.org"):
        service.vet(ids[email], "notable", by="vera", method="known")
    for i in range(2):
        service.vet(ids[f"o{i}@guild.example"], "organisation", by="vera", method="letter")
    whole = [(p.kind, p.ordinal) for p in service.public_signers(SLUG)]
    kinds = [kind for kind, _ in whole]
    assert kinds == ["notable"] * 2 + ["organisation"] * 2 + ["person"] * 5
    for kind in ("notable", "organisation", "person"):
        ordinals = [o for k, o in whole if k == kind]
        assert ordinals == sorted(ordinals)
    for offset in range(len(whole) + 2):
        for limit in range(len(whole) + 2):
            page = service.public_signers(SLUG, limit=limit, offset=offset)
            assert [(p.kind, p.ordinal) for p in page] == whole[offset : offset + limit]


def test_vetting_records_who_and_how_and_orders_the_public_list(
    service: StatementService, db: Database
) -> None:
    people = [
        request(email="p1@example.org", name="Pat Person"),
        request(email="hidden@example.org", name="Hidden Hal", show_name=False, country="FR"),
        request(email="org@guild.example", name="Gail Guild", organisation="Writers' Guild"),
        request(email="star@example.org", name="Famous Author", occupation="novelist"),
    ]
    service.sign_many(people)
    for req in people:
        confirm_by_email(service, db, req.email)
    ids = {s.email: s.id for s in signatures(db)}
    service.vet(
        ids["star@example.org"], "notable", by="vera", method="called their agent", note="ok"
    )
    service.vet(ids["org@guild.example"], "organisation", by="vera", method="letter on letterhead")
    signers = service.public_signers(SLUG)
    assert [(s.kind, s.name, s.ordinal) for s in signers] == [
        ("notable", "Famous Author", 4),
        ("organisation", "Writers' Guild", 3),
        ("person", "Pat Person", 1),
        ("person", None, 2),  # chose not to be shown: "Anonymous"
    ]
    assert signers[3].country == "FR"
    assert signers[3].occupation is None
    star = service.signature(ids["star@example.org"])
    assert (star.vetted_by, star.vet_method, star.vetted_at is not None) == (
        "vera",
        "called their agent",
        True,
    )
    assert [a["method"] for a in actions(db, "signature.vet")] == [
        "called their agent",
        "letter on letterhead",
    ]
    service.unvet(ids["star@example.org"], by="vera")
    assert service.public_signers(SLUG, limit=1)[0].name == "Writers' Guild"
    assert service.signature(ids["star@example.org"]).vetted_by is None
    assert [p.ordinal for p in service.public_signers(SLUG, limit=2, offset=1)] == [1, 2]
    with pytest.raises(ConflictError, match="not to be shown"):
        service.vet(ids["hidden@example.org"], "notable", by="vera", method="x")
    with pytest.raises(ConflictError, match="no organisation"):
        service.vet(ids["p1@example.org"], "organisation", by="vera", method="x")
    with pytest.raises(InvalidInputError, match="how the signer was vetted"):
        service.vet(ids["p1@example.org"], "notable", by="vera", method="  ")
    with pytest.raises(NotFoundError):
        service.vet(99999, "notable", by="vera", method="x")


def test_only_validated_signatures_can_be_vetted(service: StatementService, db: Database) -> None:
    service.sign(request())
    (sig,) = signatures(db)
    with pytest.raises(ConflictError, match="pending"):
        service.vet(sig.id, "notable", by="vera", method="x")


def test_erasing_a_signer_keeps_counts_consistent(
    service: StatementService, db: Database, clock: Clock
) -> None:
    service.create_statement(StatementSpec(slug="second", title="T2", text="y"), by="orla")
    service.open_statement("second", by="orla")
    service.sign_many([request(email="Erase.Me@gmail.com"), request(email="keep@example.org")])
    service.sign(request("second", email="eraseme+2@gmail.com"))
    confirm_by_email(service, db, "Erase.Me@gmail.com")
    confirm_by_email(service, db, "keep@example.org")
    service.refresh_counts()
    pending_link = last_mail(db, to="eraseme+2@gmail.com").confirm
    assert service.erase_signer("ERASEME@gmail.com", by="orla") == 2
    service.refresh_counts()
    assert service.statement(SLUG).signature_count == 2  # the validated one still counts
    assert [(p.ordinal, p.name) for p in service.public_signers(SLUG)] == [
        (1, None),
        (2, "Ann Author"),
    ]
    erased = [s for s in signatures(db) if s.erased_at is not None]
    assert len(erased) == 2
    assert all(s.email is None and s.name is None and s.ip is None for s in erased)
    with pytest.raises(TokenError):
        service.confirm(pending_link or "")
    assert {m.state for m in outbox(db) if m.to is None} == {"cancelled"}
    (audit,) = actions(db, "signer.erase")
    assert "eraseme" not in json.dumps(audit)
    assert audit["count"] == 2
    # The address may sign again (nothing of it is left to call it a duplicate).
    assert service.sign(request(email="erase.me@gmail.com")).outcome is SignOutcome.ACCEPTED


def test_anonymising_closed_statements_after_the_period(
    db: Database, settings: Settings, clock: Clock
) -> None:
    server = server_settings(settings, CONSENTRY_ANONYMISE_AFTER_DAYS="30")
    service = StatementService(db, server, clock)
    service.create_statement(StatementSpec(slug=SLUG, title="T", text="x"), by="orla")
    service.open_statement(SLUG, by="orla")
    service.sign_many(
        [
            request(email="shown@example.org", name="Shown Sam", occupation="poet"),
            request(email="hidden@example.org", name="Hidden Hal", show_name=False),
            request(email="pending@example.org", name="Pending Pam"),
        ]
    )
    confirm_by_email(service, db, "shown@example.org")
    confirm_by_email(service, db, "hidden@example.org")
    service.close_statement(SLUG, by="orla")
    clock.advance(days=29)
    assert service.anonymise_closed() == 0
    clock.advance(days=2)
    assert service.anonymise_closed() == 3
    rows = {s.name: s for s in signatures(db)}
    assert set(rows) == {"Shown Sam", None}
    assert all(s.email is None and s.ip is None and s.user_agent is None for s in signatures(db))
    assert rows["Shown Sam"].occupation == "poet"  # what the signer chose to publish stays
    assert [(p.ordinal, p.name) for p in service.public_signers(SLUG)] == [
        (1, "Shown Sam"),
        (2, None),
    ]
    assert service.anonymise_closed() == 0  # once
    assert actions(db, "statement.anonymise") == [{"by": "system", "signatures": 3}]


def test_export_csv_neutralises_formulas(service: StatementService, db: Database) -> None:
    nasty = ['=HYPERLINK("http://x")', "+1", "-2", "@SUM(A1)", "Plain Name"]
    service.sign_many([request(email=f"c{i}@example.org", name=n) for i, n in enumerate(nasty)])
    out = io.StringIO()
    assert service.export_csv(SLUG, out) == 5
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("ordinal,state,kind,name,email")
    names = [line.split(",")[3] for line in lines[1:]]
    assert names[0].startswith("\"'=HYPERLINK")
    assert names[1:4] == ["'+1", "'-2", "'@SUM(A1)"]
    assert names[4] == "Plain Name"


# -- statements --------------------------------------------------------------------------------


def test_statement_lifecycle_and_dates(db: Database, server: ServerSettings, clock: Clock) -> None:
    service = StatementService(db, server, clock)
    later = clock.now + timedelta(days=1)
    view = service.create_statement(
        StatementSpec(
            slug="dated",
            title="Dated",
            text="x",
            languages=("en", "de"),
            opens_at=later,
            closes_at=later + timedelta(days=7),
            goal=10_000,
        ),
        by="orla",
    )
    assert view.state is StatementState.DRAFT
    assert view.languages == ("en", "de")
    assert service.list_statements() == []
    assert [v.slug for v in service.list_statements(include_drafts=True)] == ["dated"]
    service.update_statement("dated", StatementChanges(title="Dated, retitled"), by="orla")
    assert service.open_statement("dated", by="orla").state is StatementState.DRAFT  # scheduled
    clock.advance(days=1)
    assert service.statement("dated").state is StatementState.OPEN
    with pytest.raises(ConflictError, match="people signed"):
        service.update_statement("dated", StatementChanges(text="changed"), by="orla")
    edited = service.update_statement(
        "dated", StatementChanges(goal=20_000, clear=frozenset({"closes_at"})), by="orla"
    )
    assert (edited.goal, edited.closes_at, edited.title) == (20_000, None, "Dated, retitled")
    service.update_statement(
        "dated", StatementChanges(closes_at=clock.now + timedelta(hours=1)), by="orla"
    )
    clock.advance(hours=1)
    assert service.statement("dated").state is StatementState.CLOSED
    with pytest.raises(ConflictError, match="has passed"):
        service.open_statement("dated", by="orla")
    service.close_statement("dated", by="orla")
    with pytest.raises(ConflictError, match="stay closed"):
        service.open_statement("dated", by="orla")
    kinds = ["statement.create", "statement.update", "statement.open", "statement.close"]
    assert all(actions(db, k) for k in kinds)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"slug": "A"}, "slug"),
        ({"slug": "has space"}, "slug"),
        ({"slug": "-leading"}, "slug"),
        ({"title": ""}, "title"),
        ({"text": "  "}, "text"),
        ({"languages": ("english",)}, "language"),
        ({"languages": ()}, "language"),
        ({"required_fields": ("shoe_size",)}, "require"),
        ({"goal": 0}, "goal"),
    ],
)
def test_bad_statement_specs_are_refused(
    db: Database, server: ServerSettings, spec: dict[str, object], message: str
) -> None:
    service = StatementService(db, server)
    base = {"slug": "ok-slug", "title": "T", "text": "x"}
    with pytest.raises(InvalidInputError, match=message):
        service.create_statement(StatementSpec(**(base | spec)), by="orla")  # type: ignore[arg-type]


def test_slugs_are_unique_and_unknown_ones_are_not_found(service: StatementService) -> None:
    with pytest.raises(ConflictError):
        service.create_statement(StatementSpec(slug=SLUG, title="T", text="x"), by="orla")
    for call in (
        lambda: service.statement("nope"),
        lambda: service.public_signers("nope"),
        lambda: service.recount("nope"),
        lambda: service.open_statement("nope", by="orla"),
    ):
        with pytest.raises(NotFoundError):
            call()
    with pytest.raises(InvalidInputError, match="close after"):
        service.create_statement(
            StatementSpec(
                slug="backwards",
                title="T",
                text="x",
                opens_at=service.clock(),
                closes_at=service.clock() - timedelta(days=1),
            ),
            by="orla",
        )


def test_a_batch_is_one_transaction_with_bulk_writes(
    service: StatementService, db: Database
) -> None:
    """A few hundred submissions: all stored with their outbox rows, counted by SQL."""
    batch = [request(email=f"bulk{i}@example{i % 7}.org") for i in range(300)]
    results = service.sign_many(batch)
    assert {r.outcome for r in results} == {SignOutcome.ACCEPTED}
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(SignatureRow)) == 300
        assert session.scalar(select(func.count()).select_from(OutboxRow)) == 300
        assert session.scalar(select(func.count()).select_from(SignatureTokenRow)) == 600


# -- concurrency (several server workers) ---------------------------------------------------------


def test_concurrent_confirmations_get_distinct_ordinals_and_exact_counts(
    service: StatementService, db: Database
) -> None:
    """Confirmations race each other and the count job; ordinals stay 1..n, the count exact."""
    n = 24
    service.sign_many([request(email=f"c{i}@example.org") for i in range(n)])
    tokens = [last_mail(db, to=f"c{i}@example.org").confirm for i in range(n)]
    done = threading.Event()
    errors: list[BaseException] = []

    def confirm(chunk: list[str | None]) -> None:
        try:
            for token in chunk:
                assert token is not None
                service.confirm(token)
        except BaseException as exc:  # reported below
            errors.append(exc)

    def refresh() -> None:
        try:
            while not done.is_set():
                service.refresh_counts()
        except BaseException as exc:  # reported below
            errors.append(exc)

    confirmers = [threading.Thread(target=confirm, args=(tokens[i::4],)) for i in range(4)]
    refreshers = [threading.Thread(target=refresh) for _ in range(2)]
    for t in confirmers + refreshers:
        t.start()
    for t in confirmers:
        t.join()
    done.set()
    for t in refreshers:
        t.join()
    assert errors == []
    assert sorted(s.ordinal or 0 for s in signatures(db)) == list(range(1, n + 1))
    service.refresh_counts()
    assert service.statement(SLUG).signature_count == n
    assert service.recount(SLUG) == (n, n)  # no drift to fix


def test_signing_does_not_wait_for_the_registry_writers_lock(
    service: StatementService, db: Database, settings: Settings
) -> None:
    """PostgreSQL: statement writes skip the event log's advisory lock (Database.write(log=False)).

    On SQLite every writer holds the one database lock, so there the registry writer must
    finish first; the signature then goes through.
    """
    result: list[SignOutcome] = []
    signer = threading.Thread(target=lambda: result.append(service.sign(request()).outcome))
    with db.write() as session:  # a registry write holding the writers' lock
        session.execute(text("SELECT 1"))
        signer.start()
        signer.join(timeout=3 if not settings.is_sqlite else 0.5)
        finished_while_locked = not signer.is_alive()
    signer.join(timeout=30)
    assert result == [SignOutcome.ACCEPTED]
    assert finished_while_locked is (not settings.is_sqlite)
