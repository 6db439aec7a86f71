"""The statements service: public statements, double opt-in signatures, operators' tools.

It knows nothing of HTTP (the web layer calls it) and writes nothing to the events journal:
signatures are personal data. Operator actions are audited in ``operator_actions``.

Signing is built for bursts (a statement can collect thousands of signatures a minute). The
web layer groups concurrent submissions into one :meth:`StatementService.sign_many` call;
the batch costs a fixed number of set-based queries — one look-up of the statements, the
blocklist, the live signatures with any of the batch's canonical e-mails, the rate-limit
counts per IP and per domain — and bulk inserts of signatures, link tokens and outbox rows,
all in one transaction. Counts are folded in batches by :meth:`refresh_counts` rather than by
a row update per signature, which would make every confirmation contend for one row.
"""

from __future__ import annotations

import csv
import hashlib
import ipaddress
import json
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import IO, Any, Literal, cast

from sqlalchemy import Table, and_, case, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from consentry.config import RateLimits, ServerSettings
from consentry.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    StoreError,
)
from consentry.registry.timeparse import now as utc_now
from consentry.statements.emails import (
    CanonicalEmail,
    canonical_domain,
    canonical_email,
    mask_email,
)
from consentry.statements.model import (
    FIELD_LIMITS,
    OPTIONAL_FIELDS,
    InvalidationCondition,
    PublicSigner,
    SignatureRecord,
    SignatureState,
    SignerKind,
    SignOutcome,
    SignRequest,
    SignResult,
    StatementChanges,
    StatementSpec,
    StatementState,
    StatementView,
    TokenInfo,
)
from consentry.statements.ratelimit import RateLimiter, ip_key
from consentry.statements.tokens import (
    TOKEN_PATTERN,
    TokenError,
    TokenPurpose,
    derive_token,
    hash_token,
    new_nonce,
)
from consentry.store.database import Database
from consentry.store.statement_tables import (
    LIVE_STATES,
    BlockRow,
    OperatorActionRow,
    OutboxRow,
    SignatureRow,
    SignatureTokenRow,
    StatementRow,
)

__all__ = ["CSV_COLUMNS", "StatementService"]

_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{1,62}")
_LANGUAGE = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})*")
_MAX_TITLE = 300
_MAX_TEXT = 50_000
# Repeated "already signed" submissions within this time queue no further e-mail: a form
# must not become a way to flood someone's mailbox.
_NOTICE_QUIET = timedelta(minutes=15)
# A concurrent writer (another server worker) may insert the same canonical e-mail between
# our duplicate check and our insert; the unique index refuses it and the batch is retried,
# which then sees the other writer's row.
_SIGN_ATTEMPTS = 3
_CHUNK = 500
_TOKENS = cast(Table, SignatureTokenRow.__table__)
_OUTBOX = cast(Table, OutboxRow.__table__)
_PUBLIC_KIND_ORDER = ("notable", "organisation", "person")
CSV_COLUMNS = (
    "ordinal",
    "state",
    "kind",
    "name",
    "email",
    "show_name",
    "occupation",
    "country",
    "organisation",
    "language",
    "created_at",
    "confirmed_at",
    "vetted_by",
    "vet_method",
    "fraud_reason",
    "invalidated_reason",
)


@dataclass
class _Pending:
    """A request that passed field validation, on its way into the batch."""

    index: int
    request: SignRequest
    email: CanonicalEmail
    ip: str
    ip_key: str
    name: str
    occupation: str | None
    country: str | None
    organisation: str | None


def _clean_text(value: str | None, field: str, errors: dict[str, str]) -> str | None:
    """Trimmed single-line text, or None when empty; control characters are refused."""
    if value is None:
        return None
    text = unicodedata.normalize("NFC", value).strip()
    if not text:
        return None
    if len(text) > FIELD_LIMITS[field]:
        errors[field] = f"at most {FIELD_LIMITS[field]} characters"
    elif any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in text):
        errors[field] = "contains control characters"
    return text


def _neutralise(cell: str) -> str:
    """A CSV cell that a spreadsheet will not run as a formula (OWASP CSV injection)."""
    return "'" + cell if cell[:1] in ("=", "+", "-", "@", "\t", "\r") else cell


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value is not None else ""


def _chunks(values: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


class StatementService:
    """Statements and signatures on one registry database (see the module docstring)."""

    def __init__(
        self,
        db: Database,
        settings: ServerSettings,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock

    # -- statements: reading ----------------------------------------------------------------

    def _state(self, row: StatementRow, now: datetime) -> StatementState:
        if row.status == "draft":
            return StatementState.DRAFT
        if row.status == "closed" or (row.closes_at is not None and now >= row.closes_at):
            return StatementState.CLOSED
        if row.opens_at is not None and now < row.opens_at:
            return StatementState.DRAFT  # opened, but scheduled: not public before opens_at
        return StatementState.OPEN

    def _view(self, row: StatementRow, now: datetime) -> StatementView:
        return StatementView(
            slug=row.slug,
            title=row.title,
            text=row.text,
            languages=tuple(row.languages.split(",")),
            state=self._state(row, now),
            opens_at=row.opens_at,
            closes_at=row.closes_at,
            goal=row.goal,
            required_fields=tuple(f for f in row.required_fields.split(",") if f),
            signature_count=row.signature_count,
            count_updated_at=row.count_updated_at,
            rate_limits=RateLimits.from_json(json.loads(row.rate_limits))
            if row.rate_limits
            else None,
        )

    def _limits(self, row: StatementRow) -> RateLimits:
        if not row.rate_limits:
            return self.settings.rate_limits
        return RateLimits.from_json(json.loads(row.rate_limits), base=self.settings.rate_limits)

    @staticmethod
    def _row(session: Session, slug: str, *, lock: bool = False) -> StatementRow:
        query = select(StatementRow).where(StatementRow.slug == slug)
        if lock:
            query = query.with_for_update()
        row = session.scalars(query).first()
        if row is None:
            raise NotFoundError(f"no statement {slug!r}; see `consentry statement list`")
        return row

    def statement(self, slug: str) -> StatementView:
        with self.db.read() as session:
            return self._view(self._row(session, slug), self.clock())

    def list_statements(self, *, include_drafts: bool = False) -> list[StatementView]:
        now = self.clock()
        with self.db.read() as session:
            rows = session.scalars(select(StatementRow).order_by(StatementRow.id)).all()
            views = [self._view(row, now) for row in rows]
        if include_drafts:
            return views
        return [v for v in views if v.state is not StatementState.DRAFT]

    def public_signers(self, slug: str, *, limit: int = 100, offset: int = 0) -> list[PublicSigner]:
        """Validated signers: vetted notables, then vetted organisations, then by ordinal."""
        if limit < 0 or offset < 0:
            raise InvalidInputError("limit and offset must not be negative")
        # One index-ordered query per kind (ix_signatures_public: statement, state, kind,
        # ordinal) instead of ORDER BY CASE kind …, which sorted every validated signature on
        # every page view: 78 ms per page at 100,000 signers on PostgreSQL, when a statement
        # goes viral. Notables and organisations are few, so counting them to place an offset
        # is cheap; the last group (everyone else) never needs a count.
        columns = (
            SignatureRow.ordinal,
            SignatureRow.name,
            SignatureRow.show_name,
            SignatureRow.occupation,
            SignatureRow.country,
            SignatureRow.organisation,
            SignatureRow.kind,
        )
        rows: list[Any] = []
        with self.db.read() as session:
            statement = self._row(session, slug)
            skip, remaining = offset, limit
            for position, kind in enumerate(_PUBLIC_KIND_ORDER):
                if remaining == 0:
                    break
                where = (
                    SignatureRow.statement_id == statement.id,
                    SignatureRow.state == SignatureState.VALIDATED.value,
                    SignatureRow.kind == kind,
                )
                if skip and position < len(_PUBLIC_KIND_ORDER) - 1:
                    in_group = session.scalar(select(func.count()).where(*where)) or 0
                    if skip >= in_group:
                        skip -= in_group
                        continue
                group = session.execute(
                    select(*columns)
                    .where(*where)
                    .order_by(SignatureRow.ordinal)
                    .limit(remaining)
                    .offset(skip)
                ).all()
                skip = 0
                remaining -= len(group)
                rows.extend(group)
        signers = []
        for ordinal, name, show, occupation, country, organisation, kind in rows:
            shown = bool(show) and name is not None
            if kind == "organisation":
                name = organisation or name
            signers.append(
                PublicSigner(
                    ordinal=int(ordinal or 0),
                    name=name if shown else None,
                    occupation=occupation if shown else None,
                    country=country,
                    kind=cast(SignerKind, kind),
                )
            )
        return signers

    # -- signing -----------------------------------------------------------------------------

    def validate_request(self, request: SignRequest) -> dict[str, str]:
        """Field errors of a request (``{}`` = fine), before any database look-up."""
        return self._prepare(0, request)[1]

    def _prepare(self, index: int, request: SignRequest) -> tuple[_Pending | None, dict[str, str]]:
        errors: dict[str, str] = {}
        name = _clean_text(request.name, "name", errors)
        if name is None:
            errors["name"] = "your name is required"
        email: CanonicalEmail | None = None
        try:
            email = canonical_email(request.email)
        except InvalidInputError as exc:
            errors["email"] = str(exc)
        fields = {
            field: _clean_text(getattr(request, field), field, errors) for field in OPTIONAL_FIELDS
        }
        key = address = ""
        try:
            key = ip_key(request.ip)
            address = str(ipaddress.ip_address(request.ip.strip()))
        except ValueError:
            errors["ip"] = "not an IP address"
        if len(address) > 64:  # an IPv6 zone id can be arbitrarily long; the column is not
            errors["ip"] = "not a usable IP address"
        if errors or email is None or name is None:
            return None, errors
        pending = _Pending(
            index=index,
            request=request,
            email=email,
            ip=address,
            ip_key=key,
            name=name,
            occupation=fields["occupation"],
            country=fields["country"],
            organisation=fields["organisation"],
        )
        return pending, {}

    def sign(self, request: SignRequest) -> SignResult:
        return self.sign_many([request])[0]

    def sign_many(self, requests: Sequence[SignRequest]) -> list[SignResult]:
        """Sign a batch in ONE write transaction; returns once everything is durable."""
        results: list[SignResult | None] = [None] * len(requests)
        ready: list[_Pending] = []
        for index, request in enumerate(requests):
            pending, errors = self._prepare(index, request)
            if pending is None:
                results[index] = SignResult(SignOutcome.INVALID, errors)
            else:
                ready.append(pending)
        if ready:
            for attempt in range(_SIGN_ATTEMPTS):
                try:
                    with self.db.write(log=False) as session:
                        batch = self._sign_batch(session, ready)
                    break
                except StoreError as exc:
                    # Database.write reports driver errors as StoreError; only a unique-index
                    # collision with a concurrent writer is worth another try.
                    if not isinstance(exc.__cause__, IntegrityError):
                        raise
                    if attempt == _SIGN_ATTEMPTS - 1:
                        raise StoreError("signing kept colliding with other writers") from None
            for index, result in batch.items():
                results[index] = result
        return [r if r is not None else SignResult(SignOutcome.INVALID) for r in results]

    def _sign_batch(self, session: Session, ready: list[_Pending]) -> dict[int, SignResult]:
        now = self.clock()
        results: dict[int, SignResult] = {}
        slugs = sorted({p.request.slug for p in ready})
        statements = {
            row.slug: row
            for row in session.scalars(select(StatementRow).where(StatementRow.slug.in_(slugs)))
        }
        by_statement: dict[int, list[_Pending]] = defaultdict(list)
        for p in ready:
            row = statements.get(p.request.slug)
            if row is None:
                results[p.index] = SignResult(
                    SignOutcome.INVALID, {"statement": "no such statement"}
                )
                continue
            if self._state(row, now) is not StatementState.OPEN:
                results[p.index] = SignResult(
                    SignOutcome.INVALID, {"statement": "this statement is not open for signatures"}
                )
                continue
            missing = {
                f: "this field is required"
                for f in row.required_fields.split(",")
                if f and getattr(p, f) is None
            }
            if missing:
                results[p.index] = SignResult(SignOutcome.INVALID, missing)
                continue
            by_statement[row.id].append(p)
        if not by_statement:
            return results

        blocked_ips, blocked_domains = self._blocklist(session)
        signature_rows: list[dict[str, Any]] = []
        accepted: list[int] = []  # positions in signature_rows that need a confirmation e-mail
        notices: list[tuple[int, str]] = []  # (existing signature id, its state)
        statements_by_id = {row.id: row for row in statements.values()}
        for statement_id, batch in by_statement.items():
            row = statements_by_id[statement_id]
            live = {
                canonical: (sig_id, state, notice_at)
                for canonical, sig_id, state, notice_at in session.execute(
                    select(
                        SignatureRow.email_canonical,
                        SignatureRow.id,
                        SignatureRow.state,
                        SignatureRow.notice_at,
                    ).where(
                        SignatureRow.statement_id == statement_id,
                        SignatureRow.email_canonical.in_({p.email.canonical for p in batch}),
                        SignatureRow.state.in_(LIVE_STATES),
                    )
                )
            }
            limiter = RateLimiter.load(
                session,
                statement_id,
                self._limits(row),
                now,
                {p.ip_key for p in batch},
                {p.email.domain for p in batch},
            )
            in_batch: set[str] = set()
            noticed: set[int] = set()
            for p in batch:
                fraud = self._fraud_reason(p, blocked_ips, blocked_domains, limiter)
                if fraud is None and (p.email.canonical in live or p.email.canonical in in_batch):
                    existing = live.get(p.email.canonical)
                    if existing is not None:
                        sig_id, state, notice_at = existing
                        quiet = notice_at is not None and now - notice_at < _NOTICE_QUIET
                        if not quiet and sig_id not in noticed:
                            noticed.add(sig_id)
                            notices.append((sig_id, state))
                    results[p.index] = SignResult(SignOutcome.DUPLICATE)
                    continue
                limiter.record(p.ip_key, p.email.domain)
                request = p.request
                signature_rows.append(
                    {
                        "statement_id": statement_id,
                        "state": SignatureState.PENDING.value
                        if fraud is None
                        else SignatureState.FRAUDULENT.value,
                        "name": p.name,
                        "email": p.email.address,
                        "email_canonical": p.email.canonical,
                        "email_domain": p.email.domain,
                        "show_name": bool(request.show_name),
                        "occupation": p.occupation,
                        "country": p.country,
                        "organisation": p.organisation,
                        "ip": p.ip,
                        "ip_key": p.ip_key,
                        "user_agent": (request.user_agent or "")[:500],
                        "language": self._language(row, request.language),
                        "created_at": now,
                        "fraud_reason": fraud,
                        "counted": False,
                        "kind": "person",
                    }
                )
                if fraud is None:
                    in_batch.add(p.email.canonical)
                    accepted.append(len(signature_rows) - 1)
                    results[p.index] = SignResult(SignOutcome.ACCEPTED)
                else:
                    results[p.index] = SignResult(SignOutcome.SUPPRESSED)

        pending_ids: dict[tuple[int, str | None], int] = {}
        if signature_rows:
            # Unordered RETURNING keeps this one multi-row INSERT (insertmanyvalues) on SQLite
            # too; pending rows are told apart by (statement, canonical e-mail), unique in a
            # batch by the duplicate check above.
            returned = session.execute(
                insert(SignatureRow).returning(
                    SignatureRow.id,
                    SignatureRow.statement_id,
                    SignatureRow.email_canonical,
                    SignatureRow.state,
                ),
                signature_rows,
            )
            for sig_id, statement_id, canonical, state in returned:
                if state == SignatureState.PENDING.value:
                    pending_ids[(statement_id, canonical)] = sig_id
        tokens: list[dict[str, Any]] = []
        outbox: list[dict[str, Any]] = []
        for position in accepted:
            values = signature_rows[position]
            sig_id = pending_ids[(values["statement_id"], values["email_canonical"])]
            self._queue(sig_id, "confirm", now, tokens, outbox, confirm=True)
        for sig_id, state in notices:
            self._queue(sig_id, "already_signed", now, tokens, outbox, confirm=state == "pending")
        if notices:
            session.execute(
                update(SignatureRow)
                .where(SignatureRow.id.in_([sig_id for sig_id, _ in notices]))
                .values(notice_at=now)
            )
        # Core INSERTs on the tables: one executemany each. (The ORM's bulk insert splits a
        # list whenever a row has None where its neighbour has a value, and confirm and
        # withdraw tokens alternate: it ran one INSERT per token.)
        if tokens:
            session.execute(insert(_TOKENS), tokens)
        if outbox:
            session.execute(insert(_OUTBOX), outbox)
        return results

    def _fraud_reason(
        self,
        p: _Pending,
        blocked_ips: list[ipaddress.IPv4Network | ipaddress.IPv6Network],
        blocked_domains: set[str],
        limiter: RateLimiter,
    ) -> str | None:
        if p.request.honeypot:
            return "honeypot"
        # Written as "not >=" so that a NaN age counts as too fast, not as patient.
        if not p.request.form_age_seconds >= self.settings.min_fill_seconds:
            return "too-fast"
        if any(_in_network(p.ip, network) for network in blocked_ips):
            return "blocked-ip"
        if blocked_domains:
            labels = p.email.domain.split(".")
            if any(".".join(labels[i:]) in blocked_domains for i in range(len(labels))):
                return "blocked-domain"
        return limiter.breach(p.ip_key, p.email.domain)

    @staticmethod
    def _blocklist(
        session: Session,
    ) -> tuple[list[ipaddress.IPv4Network | ipaddress.IPv6Network], set[str]]:
        ips: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        domains: set[str] = set()
        for kind, value in session.execute(select(BlockRow.kind, BlockRow.value)):
            if kind == "ip":
                ips.append(ipaddress.ip_network(value, strict=False))
            else:
                domains.add(value)
        return ips, domains

    @staticmethod
    def _language(row: StatementRow, wanted: str) -> str:
        languages = row.languages.split(",")
        return wanted if wanted in languages else languages[0]

    def _queue(
        self,
        signature_id: int,
        kind: str,
        now: datetime,
        tokens: list[dict[str, Any]],
        outbox: list[dict[str, Any]],
        *,
        confirm: bool,
    ) -> None:
        """Rows for one e-mail: its links' token hashes and the outbox row with their nonces."""
        nonces: dict[str, str | None] = {"confirm": None, "withdraw": new_nonce()}
        if confirm:
            nonces["confirm"] = new_nonce()
        for purpose, nonce in nonces.items():
            if nonce is None:
                continue
            token = derive_token(self.settings.secret_key, cast(TokenPurpose, purpose), nonce)
            tokens.append(
                {
                    "token_hash": hash_token(token),
                    "signature_id": signature_id,
                    "purpose": purpose,
                    "created_at": now,
                    # Withdraw links do not expire: a signer may take their name back later.
                    "expires_at": now + self.settings.confirm_ttl if purpose == "confirm" else None,
                }
            )
        outbox.append(
            {
                "kind": kind,
                "signature_id": signature_id,
                "confirm_nonce": nonces["confirm"],
                "withdraw_nonce": nonces["withdraw"],
                "state": "queued",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
        )

    # -- links: confirm and withdraw ---------------------------------------------------------

    def _token(
        self, session: Session, token: str, purpose: TokenPurpose, now: datetime
    ) -> tuple[SignatureTokenRow, SignatureRow, StatementRow]:
        if not TOKEN_PATTERN.fullmatch(token or ""):
            raise TokenError("unknown")
        found = session.execute(
            select(SignatureTokenRow, SignatureRow, StatementRow)
            .join(SignatureRow, SignatureRow.id == SignatureTokenRow.signature_id)
            .join(StatementRow, StatementRow.id == SignatureRow.statement_id)
            .where(SignatureTokenRow.token_hash == hash_token(token))
        ).first()
        if found is None or found[0].purpose != purpose:
            raise TokenError("unknown")
        tok, sig, statement = found
        if tok.used_at is not None or sig.state not in LIVE_STATES:
            raise TokenError("used")
        if purpose == "confirm":
            if sig.state != SignatureState.PENDING.value:
                raise TokenError("used")
            if tok.expires_at is not None and now >= tok.expires_at:
                raise TokenError("expired")
            if self._state(statement, now) is not StatementState.OPEN:
                raise TokenError(
                    "expired", "this statement is closed; signatures can no longer be confirmed"
                )
        return tok, sig, statement

    @staticmethod
    def _info(sig: SignatureRow, statement: StatementRow) -> TokenInfo:
        return TokenInfo(
            slug=statement.slug,
            title=statement.title,
            masked_email=mask_email(sig.email or ""),
            state=SignatureState(sig.state),
            ordinal=sig.ordinal,
        )

    def token_info(self, token: str, purpose: Literal["confirm", "withdraw"]) -> TokenInfo:
        with self.db.read() as session:
            _tok, sig, statement = self._token(session, token, purpose, self.clock())
            return self._info(sig, statement)

    def confirm(self, token: str) -> TokenInfo:
        """PENDING → VALIDATED with the next ordinal; the link is single-use."""
        now = self.clock()
        with self.db.write(log=False) as session:
            _tok, sig, statement = self._token(session, token, "confirm", now)
            # Conditional updates: of two concurrent confirmations only one changes the row.
            claimed = session.execute(
                update(SignatureTokenRow)
                .where(SignatureTokenRow.signature_id == sig.id)
                .where(SignatureTokenRow.purpose == "confirm")
                .where(SignatureTokenRow.used_at.is_(None))
                .values(used_at=now)
                .execution_options(synchronize_session=False)
            )
            if claimed.rowcount == 0:  # type: ignore[attr-defined]
                raise TokenError("used")
            ordinal = session.execute(
                update(StatementRow)
                .where(StatementRow.id == statement.id)
                .values(last_ordinal=StatementRow.last_ordinal + 1)
                .returning(StatementRow.last_ordinal)
                .execution_options(synchronize_session=False)
            ).scalar_one()
            changed = session.execute(
                update(SignatureRow)
                .where(SignatureRow.id == sig.id, SignatureRow.state == "pending")
                .values(state="validated", ordinal=ordinal, confirmed_at=now)
                .execution_options(synchronize_session=False)
            )
            if changed.rowcount == 0:  # type: ignore[attr-defined]
                raise TokenError("used")
            tokens: list[dict[str, Any]] = []
            outbox: list[dict[str, Any]] = []
            self._queue(sig.id, "confirmed", now, tokens, outbox, confirm=False)
            session.execute(insert(_TOKENS), tokens)
            session.execute(insert(_OUTBOX), outbox)
            return replace(
                self._info(sig, statement), state=SignatureState.VALIDATED, ordinal=ordinal
            )

    def withdraw(self, token: str) -> TokenInfo:
        """Take a signature back: out of the count and the list; its personal data is dropped.

        The address is free again, so the signer can sign anew later.
        """
        now = self.clock()
        with self.db.write(log=False) as session:
            _tok, sig, statement = self._token(session, token, "withdraw", now)
            info = self._info(sig, statement)
            changed = session.execute(
                update(SignatureRow)
                .where(SignatureRow.id == sig.id, SignatureRow.state.in_(LIVE_STATES))
                .values(
                    state="invalidated",
                    withdrawn_at=now,
                    invalidated_reason="withdrawn by the signer",
                    **_PERSONAL_CLEARED,
                )
                .execution_options(synchronize_session=False)
            )
            if changed.rowcount == 0:  # type: ignore[attr-defined]
                raise TokenError("used")
            self._forget_links(session, [sig.id], now)
            return replace(info, state=SignatureState.INVALIDATED)

    @staticmethod
    def _forget_links(session: Session, signature_ids: Sequence[int], now: datetime) -> None:
        """Tokens of these signatures used up; their unsent e-mails cancelled."""
        for chunk in _chunks(signature_ids):
            session.execute(
                update(SignatureTokenRow)
                .where(SignatureTokenRow.signature_id.in_(chunk))
                .where(SignatureTokenRow.used_at.is_(None))
                .values(used_at=now)
                .execution_options(synchronize_session=False)
            )
            session.execute(
                update(OutboxRow)
                .where(OutboxRow.signature_id.in_(chunk), OutboxRow.state == "queued")
                .values(state="cancelled", confirm_nonce=None, withdraw_nonce=None)
                .execution_options(synchronize_session=False)
            )

    # -- counts ------------------------------------------------------------------------------

    def refresh_counts(self) -> int:
        """Fold newly validated and no-longer-validated signatures into the public counts.

        Returns how many signatures changed a count. Idle calls read two index ranges and
        write nothing, so the web app can call this every few seconds in every worker.
        """
        gained_q = (
            select(SignatureRow.statement_id, func.count())
            .where(SignatureRow.state == "validated", SignatureRow.counted.is_(False))
            .group_by(SignatureRow.statement_id)
        )
        lost_q = (
            select(SignatureRow.statement_id, func.count())
            .where(
                SignatureRow.state.in_(("pending", "invalidated", "fraudulent")),
                SignatureRow.counted.is_(True),
            )
            .group_by(SignatureRow.statement_id)
        )
        with self.db.read() as session:
            if (
                not session.execute(gained_q.limit(1)).first()
                and not session.execute(lost_q.limit(1)).first()
            ):
                return 0
        now = self.clock()
        with self.db.write(log=False) as session:
            # Lock the statements first (PostgreSQL: rows; SQLite: the database), so that two
            # workers refreshing at once do not fold the same signatures twice.
            session.execute(
                select(StatementRow.id).order_by(StatementRow.id).with_for_update()
            ).all()
            # The marks are flipped by UPDATE ... RETURNING, so the delta is exactly the rows
            # flipped, even if a confirmation commits meanwhile (PostgreSQL, READ COMMITTED).
            gained = Counter(
                session.scalars(
                    update(SignatureRow)
                    .where(SignatureRow.state == "validated", SignatureRow.counted.is_(False))
                    .values(counted=True)
                    .returning(SignatureRow.statement_id)
                    .execution_options(synchronize_session=False)
                )
            )
            lost = Counter(
                session.scalars(
                    update(SignatureRow)
                    .where(
                        SignatureRow.state.in_(("pending", "invalidated", "fraudulent")),
                        SignatureRow.counted.is_(True),
                    )
                    .values(counted=False)
                    .returning(SignatureRow.statement_id)
                    .execution_options(synchronize_session=False)
                )
            )
            for statement_id in sorted(set(gained) | set(lost)):
                session.execute(
                    update(StatementRow)
                    .where(StatementRow.id == statement_id)
                    .values(
                        signature_count=StatementRow.signature_count
                        + gained[statement_id]
                        - lost[statement_id],
                        count_updated_at=now,
                    )
                    .execution_options(synchronize_session=False)
                )
            return sum(gained.values()) + sum(lost.values())

    def recount(self, slug: str, *, by: str = "system") -> tuple[int, int]:
        """Recompute a statement's count from its signatures: (count before, count after)."""
        now = self.clock()
        with self.db.write(log=False) as session:
            row = self._row(session, slug, lock=True)
            before = row.signature_count
            after = session.execute(
                select(func.count()).where(
                    SignatureRow.statement_id == row.id, SignatureRow.state == "validated"
                )
            ).scalar_one()
            session.execute(
                update(SignatureRow)
                .where(SignatureRow.statement_id == row.id)
                .where(SignatureRow.counted != (SignatureRow.state == "validated"))
                .values(counted=SignatureRow.state == "validated")
                .execution_options(synchronize_session=False)
            )
            row.signature_count = after
            row.count_updated_at = now
            if before != after:
                self._audit(session, by, "recount", row.id, {"before": before, "after": after})
            return before, int(after)

    # -- operators: statements ---------------------------------------------------------------

    def _audit(
        self,
        session: Session,
        by: str,
        action: str,
        statement_id: int | None,
        params: dict[str, Any],
    ) -> None:
        session.add(
            OperatorActionRow(
                at=self.clock(),
                operator=by,
                action=action,
                statement_id=statement_id,
                params=json.dumps(params, sort_keys=True, default=str),
            )
        )

    @staticmethod
    def _check_by(by: str) -> str:
        by = (by or "").strip()
        if not by or len(by) > 100:
            raise InvalidInputError("the acting operator (by) must be 1 to 100 characters")
        return by

    def _validated_fields(
        self,
        *,
        title: str | None,
        text: str | None,
        languages: tuple[str, ...] | None,
        required: tuple[str, ...] | None,
        goal: int | None,
    ) -> None:
        if title is not None and not (0 < len(title.strip()) <= _MAX_TITLE):
            raise InvalidInputError(f"the title must be 1 to {_MAX_TITLE} characters")
        if text is not None and not (0 < len(text.strip()) <= _MAX_TEXT):
            raise InvalidInputError(f"the text must be 1 to {_MAX_TEXT} characters")
        if languages is not None:
            if not languages:
                raise InvalidInputError("a statement needs at least one language")
            for language in languages:
                if not _LANGUAGE.fullmatch(language):
                    raise InvalidInputError(f"not a language tag: {language!r} (e.g. en, de-CH)")
        if required is not None:
            unknown = sorted(set(required) - set(OPTIONAL_FIELDS))
            if unknown:
                raise InvalidInputError(
                    f"cannot require {unknown[0]!r}; choose from {', '.join(OPTIONAL_FIELDS)}"
                )
        if goal is not None and goal <= 0:
            raise InvalidInputError("the signature goal must be a positive number")

    @staticmethod
    def _check_dates(opens_at: datetime | None, closes_at: datetime | None) -> None:
        for value in (opens_at, closes_at):
            if value is not None and value.tzinfo is None:
                raise InvalidInputError("times must carry a time zone (UTC)")
        if opens_at is not None and closes_at is not None and closes_at <= opens_at:
            raise InvalidInputError("the statement must close after it opens")

    def create_statement(self, spec: StatementSpec, *, by: str) -> StatementView:
        by = self._check_by(by)
        if not _SLUG.fullmatch(spec.slug):
            raise InvalidInputError(
                f"slug {spec.slug!r} must be 2-63 lower-case letters, digits and hyphens"
            )
        languages = tuple(dict.fromkeys(spec.languages))
        self._validated_fields(
            title=spec.title,
            text=spec.text,
            languages=languages,
            required=spec.required_fields,
            goal=spec.goal,
        )
        self._check_dates(spec.opens_at, spec.closes_at)
        now = self.clock()
        with self.db.write(log=False) as session:
            exists = session.scalar(select(StatementRow.id).where(StatementRow.slug == spec.slug))
            if exists is not None:
                raise ConflictError(f"a statement {spec.slug!r} exists already")
            row = StatementRow(
                slug=spec.slug,
                title=spec.title.strip(),
                text=spec.text.strip(),
                languages=",".join(languages),
                status="draft",
                opens_at=spec.opens_at,
                closes_at=spec.closes_at,
                goal=spec.goal,
                required_fields=",".join(dict.fromkeys(spec.required_fields)),
                rate_limits=json.dumps(spec.rate_limits.as_json()) if spec.rate_limits else None,
                signature_count=0,
                last_ordinal=0,
                created_at=now,
                created_by=by,
            )
            session.add(row)
            session.flush()
            self._audit(session, by, "statement.create", row.id, {"slug": spec.slug})
            return self._view(row, now)

    def update_statement(self, slug: str, changes: StatementChanges, *, by: str) -> StatementView:
        by = self._check_by(by)
        clearable = {"opens_at", "closes_at", "goal", "rate_limits"}
        if not changes.clear <= clearable:
            raise InvalidInputError(f"can clear only {', '.join(sorted(clearable))}")
        self._validated_fields(
            title=changes.title,
            text=changes.text,
            languages=changes.languages,
            required=changes.required_fields,
            goal=changes.goal,
        )
        now = self.clock()
        with self.db.write(log=False) as session:
            row = self._row(session, slug, lock=True)
            if row.status != "draft" and (changes.title is not None or changes.text is not None):
                raise ConflictError(
                    "the title and text of an opened statement cannot change: people signed them"
                )
            if row.status != "draft" and changes.required_fields is not None:
                raise ConflictError("required fields cannot change once a statement is open")
            done: dict[str, Any] = {}
            if changes.title is not None:
                row.title = done["title"] = changes.title.strip()
            if changes.text is not None:
                row.text = changes.text.strip()
                done["text_sha256"] = hashlib.sha256(row.text.encode()).hexdigest()
            if changes.languages is not None:
                row.languages = done["languages"] = ",".join(dict.fromkeys(changes.languages))
            if changes.required_fields is not None:
                row.required_fields = ",".join(dict.fromkeys(changes.required_fields))
                done["required_fields"] = row.required_fields
            opens = None if "opens_at" in changes.clear else changes.opens_at or row.opens_at
            closes = None if "closes_at" in changes.clear else changes.closes_at or row.closes_at
            self._check_dates(opens, closes)
            if (opens, closes) != (row.opens_at, row.closes_at):
                row.opens_at, row.closes_at = opens, closes
                done["opens_at"], done["closes_at"] = _iso(opens), _iso(closes)
            if "goal" in changes.clear or changes.goal is not None:
                row.goal = done["goal"] = None if "goal" in changes.clear else changes.goal
            if "rate_limits" in changes.clear:
                row.rate_limits = None
                done["rate_limits"] = None
            elif changes.rate_limits is not None:
                done["rate_limits"] = changes.rate_limits.as_json()
                row.rate_limits = json.dumps(done["rate_limits"])
            self._audit(session, by, "statement.update", row.id, done)
            return self._view(row, now)

    def open_statement(self, slug: str, *, by: str) -> StatementView:
        by = self._check_by(by)
        now = self.clock()
        with self.db.write(log=False) as session:
            row = self._row(session, slug, lock=True)
            if row.status == "closed":
                raise ConflictError(f"statement {slug!r} is closed; closed statements stay closed")
            if row.closes_at is not None and now >= row.closes_at:
                raise ConflictError(
                    f"statement {slug!r} closes at {row.closes_at.isoformat()}, which has passed; "
                    "change its closing date first"
                )
            row.status = "open"
            self._audit(session, by, "statement.open", row.id, {})
            return self._view(row, now)

    def close_statement(self, slug: str, *, by: str) -> StatementView:
        by = self._check_by(by)
        now = self.clock()
        with self.db.write(log=False) as session:
            row = self._row(session, slug, lock=True)
            if row.status != "closed":
                row.status = "closed"
                row.closed_at = now
                self._audit(session, by, "statement.close", row.id, {})
            return self._view(row, now)

    # -- operators: signatures ---------------------------------------------------------------

    @staticmethod
    def _record(row: SignatureRow, slug: str) -> SignatureRecord:
        return SignatureRecord(
            id=row.id,
            slug=slug,
            state=SignatureState(row.state),
            name=row.name,
            email=row.email,
            show_name=bool(row.show_name),
            occupation=row.occupation,
            country=row.country,
            organisation=row.organisation,
            ip=row.ip,
            user_agent=row.user_agent,
            language=row.language,
            created_at=row.created_at,
            confirmed_at=row.confirmed_at,
            withdrawn_at=row.withdrawn_at,
            ordinal=row.ordinal,
            kind=cast(SignerKind, row.kind),
            vetted_by=row.vetted_by,
            vetted_at=row.vetted_at,
            vet_method=row.vet_method,
            fraud_reason=row.fraud_reason,
            invalidated_reason=row.invalidated_reason,
            erased=row.erased_at is not None,
        )

    def signatures(
        self,
        slug: str,
        *,
        state: SignatureState | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[SignatureRecord]:
        if limit < 0 or offset < 0:
            raise InvalidInputError("limit and offset must not be negative")
        with self.db.read() as session:
            statement = self._row(session, slug)
            query = select(SignatureRow).where(SignatureRow.statement_id == statement.id)
            if state is not None:
                query = query.where(SignatureRow.state == SignatureState(state).value)
            rows = session.scalars(query.order_by(SignatureRow.id).limit(limit).offset(offset))
            return [self._record(row, slug) for row in rows]

    def signature(self, signature_id: int) -> SignatureRecord:
        with self.db.read() as session:
            found = session.execute(
                select(SignatureRow, StatementRow.slug)
                .join(StatementRow, StatementRow.id == SignatureRow.statement_id)
                .where(SignatureRow.id == signature_id)
            ).first()
            if found is None:
                raise NotFoundError(f"no signature {signature_id}")
            return self._record(found[0], found[1])

    def vet(
        self,
        signature_id: int,
        kind: Literal["notable", "organisation"],
        *,
        by: str,
        method: str,
        note: str = "",
    ) -> None:
        """Show a validated signer as a notable person or an organisation, recording how."""
        by = self._check_by(by)
        if kind not in ("notable", "organisation"):
            raise InvalidInputError("vet as 'notable' or 'organisation'")
        method = (method or "").strip()
        if not method or len(method) > 200:
            raise InvalidInputError(
                "say how the signer was vetted (1 to 200 characters, e.g. 'called their agent')"
            )
        now = self.clock()
        with self.db.write(log=False) as session:
            row = session.get(SignatureRow, signature_id, with_for_update=True)
            if row is None:
                raise NotFoundError(f"no signature {signature_id}")
            if row.state != SignatureState.VALIDATED.value:
                raise ConflictError(
                    f"signature {signature_id} is {row.state}; only validated ones are vetted"
                )
            if not row.show_name or row.name is None:
                raise ConflictError(
                    f"the signer of signature {signature_id} chose not to be shown; "
                    "it cannot be featured"
                )
            if kind == "organisation" and not row.organisation:
                raise ConflictError(f"signature {signature_id} names no organisation")
            row.kind, row.vetted_by, row.vetted_at = kind, by, now
            row.vet_method, row.vet_note = method, note
            self._audit(
                session,
                by,
                "signature.vet",
                row.statement_id,
                {"signature": signature_id, "kind": kind, "method": method, "note": note},
            )

    def unvet(self, signature_id: int, *, by: str) -> None:
        by = self._check_by(by)
        with self.db.write(log=False) as session:
            row = session.get(SignatureRow, signature_id, with_for_update=True)
            if row is None:
                raise NotFoundError(f"no signature {signature_id}")
            previous = row.kind
            row.kind = "person"
            row.vetted_by = row.vetted_at = row.vet_method = row.vet_note = None
            self._audit(
                session,
                by,
                "signature.unvet",
                row.statement_id,
                {"signature": signature_id, "was": previous},
            )

    def invalidate(
        self, slug: str, condition: InvalidationCondition, *, by: str, dry_run: bool
    ) -> int:
        """Invalidate the live signatures matching every given condition; returns how many.

        A dry run counts with exactly the same selection and changes nothing; both are audited.
        """
        by = self._check_by(by)
        network = None
        if condition.ip is not None:
            try:
                network = ipaddress.ip_network(condition.ip.strip(), strict=False)
            except ValueError:
                raise InvalidInputError(f"not an IP address or CIDR: {condition.ip!r}") from None
        domain = canonical_domain(condition.email_domain) if condition.email_domain else None
        if condition.state is not None and condition.state.value not in LIVE_STATES:
            raise InvalidInputError("only pending or validated signatures can be invalidated")
        if not any(
            (
                network,
                domain,
                condition.created_from,
                condition.created_to,
                condition.user_agent_contains,
            )
        ):
            raise InvalidInputError(
                "give at least one condition (ip, domain, created between, user agent)"
            )
        self._check_dates(condition.created_from, condition.created_to)
        now = self.clock()
        with self.db.write(log=False) as session:
            statement = self._row(session, slug)
            query = select(SignatureRow.id, SignatureRow.ip).where(
                SignatureRow.statement_id == statement.id,
                SignatureRow.state.in_(
                    [condition.state.value] if condition.state else list(LIVE_STATES)
                ),
            )
            if domain is not None:
                query = query.where(
                    or_(
                        SignatureRow.email_domain == domain,
                        SignatureRow.email_domain.like("%." + _like_escape(domain), escape="\\"),
                    )
                )
            if condition.created_from is not None:
                query = query.where(SignatureRow.created_at >= condition.created_from)
            if condition.created_to is not None:
                query = query.where(SignatureRow.created_at < condition.created_to)
            if condition.user_agent_contains:
                pattern = "%" + _like_escape(condition.user_agent_contains) + "%"
                query = query.where(SignatureRow.user_agent.like(pattern, escape="\\"))
            ids = [
                sig_id
                for sig_id, ip in session.execute(query)
                if network is None or (ip is not None and _in_network(ip, network))
            ]
            params = {
                "ip": str(network) if network else None,
                "email_domain": domain,
                "created_from": _iso(condition.created_from) or None,
                "created_to": _iso(condition.created_to) or None,
                "user_agent_contains": condition.user_agent_contains,
                "state": condition.state.value if condition.state else None,
                "dry_run": dry_run,
                "count": len(ids),
            }
            self._audit(session, by, "signatures.invalidate", statement.id, params)
            if dry_run or not ids:
                return len(ids)
            reason = f"invalidated by {by}"[:200]
            for chunk in _chunks(ids):
                session.execute(
                    update(SignatureRow)
                    .where(SignatureRow.id.in_(chunk), SignatureRow.state.in_(LIVE_STATES))
                    .values(state="invalidated", invalidated_reason=reason)
                    .execution_options(synchronize_session=False)
                )
            self._forget_links(session, ids, now)
            return len(ids)

    def block(self, kind: Literal["ip", "domain"], value: str, *, by: str, note: str = "") -> None:
        """Treat new submissions from this IP/CIDR or e-mail domain (and subdomains) as fraud."""
        by = self._check_by(by)
        normal = self._block_value(kind, value)
        with self.db.write(log=False) as session:
            row = session.scalars(
                select(BlockRow).where(BlockRow.kind == kind, BlockRow.value == normal)
            ).first()
            if row is None:
                session.add(
                    BlockRow(
                        kind=kind, value=normal, note=note, created_by=by, created_at=self.clock()
                    )
                )
            else:
                row.note = note or row.note
            self._audit(session, by, "block", None, {"kind": kind, "value": normal, "note": note})

    def unblock(self, kind: Literal["ip", "domain"], value: str, *, by: str) -> None:
        by = self._check_by(by)
        normal = self._block_value(kind, value)
        with self.db.write(log=False) as session:
            gone = session.execute(
                delete(BlockRow).where(BlockRow.kind == kind, BlockRow.value == normal)
            )
            if gone.rowcount == 0:  # type: ignore[attr-defined]
                raise NotFoundError(f"{kind} {normal} is not blocked")
            self._audit(session, by, "unblock", None, {"kind": kind, "value": normal})

    def blocklist(self) -> list[tuple[str, str, str, str]]:
        """(kind, value, note, created_by) of every block."""
        with self.db.read() as session:
            rows = session.execute(
                select(BlockRow.kind, BlockRow.value, BlockRow.note, BlockRow.created_by).order_by(
                    BlockRow.kind, BlockRow.value
                )
            ).all()
            return [(k, v, n, b) for k, v, n, b in rows]

    @staticmethod
    def _block_value(kind: str, value: str) -> str:
        if kind == "ip":
            try:
                return str(ipaddress.ip_network(value.strip(), strict=False))
            except ValueError:
                raise InvalidInputError(f"not an IP address or CIDR: {value!r}") from None
        if kind == "domain":
            domain = canonical_domain(value)
            if not re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)+", domain):
                raise InvalidInputError(f"not an e-mail domain: {value!r}")
            return domain
        raise InvalidInputError("block kind must be 'ip' or 'domain'")

    # -- signer rights -----------------------------------------------------------------------

    def erase_signer(self, email: str, *, by: str) -> int:
        """Erase the personal data of every signature by this address (all statements).

        Validated signatures stay counted, as "Anonymous" with their ordinal, so the public
        count and list stay consistent; links and unsent e-mails of these signatures die.
        Returns how many signatures were erased. The audit keeps only a hash of the address.
        """
        by = self._check_by(by)
        try:
            canonical = canonical_email(email).canonical
        except InvalidInputError:
            canonical = email.strip().lower()
        now = self.clock()
        with self.db.write(log=False) as session:
            ids = list(
                session.scalars(
                    select(SignatureRow.id).where(SignatureRow.email_canonical == canonical)
                )
            )
            for chunk in _chunks(ids):
                session.execute(
                    update(SignatureRow)
                    .where(SignatureRow.id.in_(chunk))
                    .values(erased_at=now, kind="person", **_PERSONAL_CLEARED)
                    .execution_options(synchronize_session=False)
                )
                session.execute(
                    delete(SignatureTokenRow).where(SignatureTokenRow.signature_id.in_(chunk))
                )
                session.execute(
                    update(OutboxRow)
                    .where(OutboxRow.signature_id.in_(chunk), OutboxRow.state == "queued")
                    .values(state="cancelled", confirm_nonce=None, withdraw_nonce=None)
                    .execution_options(synchronize_session=False)
                )
            digest = hashlib.sha256(canonical.encode()).hexdigest()
            self._audit(
                session, by, "signer.erase", None, {"email_sha256": digest, "count": len(ids)}
            )
            return len(ids)

    def anonymise_closed(self, *, by: str = "system") -> int:
        """Anonymise statements closed for longer than ``anonymise_after``; returns signatures.

        Contact and network data (e-mail, IP, user agent) of every signature goes, as does
        everything of signatures not on the public list. What validated signers chose to
        show publicly (name, occupation, country, organisation) stays: it is the statement.
        """
        now = self.clock()
        cutoff = now - self.settings.anonymise_after
        total = 0
        with self.db.write(log=False) as session:
            rows = session.scalars(
                select(StatementRow).where(StatementRow.anonymised_at.is_(None))
            ).all()
            for row in rows:
                ended = row.closed_at if row.status == "closed" else None
                if row.status != "draft" and row.closes_at is not None:
                    ended = min(filter(None, (ended, row.closes_at)))
                if ended is None or ended > cutoff:
                    continue
                ids = list(
                    session.scalars(
                        select(SignatureRow.id).where(SignatureRow.statement_id == row.id)
                    )
                )
                public = and_(SignatureRow.state == "validated", SignatureRow.show_name.is_(True))
                for chunk in _chunks(ids):
                    session.execute(
                        update(SignatureRow)
                        .where(SignatureRow.id.in_(chunk))
                        .values(
                            email=None,
                            email_canonical=None,
                            email_domain="",
                            ip=None,
                            ip_key="",
                            user_agent=None,
                            name=case((public, SignatureRow.name), else_=None),
                            occupation=case((public, SignatureRow.occupation), else_=None),
                            country=case((public, SignatureRow.country), else_=None),
                            organisation=case((public, SignatureRow.organisation), else_=None),
                        )
                        .execution_options(synchronize_session=False)
                    )
                    session.execute(
                        delete(SignatureTokenRow).where(SignatureTokenRow.signature_id.in_(chunk))
                    )
                    session.execute(
                        update(OutboxRow)
                        .where(OutboxRow.signature_id.in_(chunk), OutboxRow.state == "queued")
                        .values(state="cancelled", confirm_nonce=None, withdraw_nonce=None)
                        .execution_options(synchronize_session=False)
                    )
                row.anonymised_at = now
                self._audit(session, by, "statement.anonymise", row.id, {"signatures": len(ids)})
                total += len(ids)
        return total

    def export_csv(self, slug: str, out: IO[str]) -> int:
        """Every signature of a statement as CSV (for operators); returns the rows written.

        Cells that a spreadsheet would run as a formula (starting with ``= + - @``, tab or
        carriage return) are prefixed with ``'``: a signer's name must not run code.
        """
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        count = 0
        with self.db.read() as session:
            statement = self._row(session, slug)
            rows = session.scalars(
                select(SignatureRow)
                .where(SignatureRow.statement_id == statement.id)
                .order_by(SignatureRow.id)
                .execution_options(yield_per=1000)
            )
            for row in rows:
                values = [
                    row.ordinal,
                    row.state,
                    row.kind,
                    row.name,
                    row.email,
                    "yes" if row.show_name else "no",
                    row.occupation,
                    row.country,
                    row.organisation,
                    row.language,
                    _iso(row.created_at),
                    _iso(row.confirmed_at),
                    row.vetted_by,
                    row.vet_method,
                    row.fraud_reason,
                    row.invalidated_reason,
                ]
                writer.writerow(["" if v is None else _neutralise(str(v)) for v in values])
                count += 1
        return count

    def actions(self, *, slug: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The operators' audit trail, newest first."""
        with self.db.read() as session:
            query = select(OperatorActionRow, StatementRow.slug).outerjoin(
                StatementRow, StatementRow.id == OperatorActionRow.statement_id
            )
            if slug is not None:
                query = query.where(StatementRow.slug == slug)
            rows = session.execute(query.order_by(OperatorActionRow.id.desc()).limit(limit)).all()
            return [
                {
                    "id": row.id,
                    "at": row.at.isoformat(),
                    "operator": row.operator,
                    "action": row.action,
                    "statement": statement_slug,
                    "params": json.loads(row.params),
                }
                for row, statement_slug in rows
            ]


_PERSONAL_CLEARED: dict[str, Any] = {
    "name": None,
    "email": None,
    "email_canonical": None,
    "occupation": None,
    "country": None,
    "organisation": None,
    "user_agent": None,
    "ip": None,
}


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _in_network(ip: str, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address in network
