"""Operator accounts: argon2id password hashes, roles, and server-side sessions.

Passwords are hashed with argon2-cffi's ``PasswordHasher`` (argon2id, its RFC 9106 defaults);
hashes are upgraded on the next successful log-in when the parameters change. An unknown
user name costs one verification against a fixed dummy hash, so timing does not tell
which user names exist. A session token is random and handed to the browser; the database
keeps only its SHA-256, so a leaked database opens no session. Changing a password ends
every session of that operator.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from consentry.errors import ConflictError, InvalidInputError, NotFoundError, StoreError
from consentry.registry.timeparse import now as utc_now
from consentry.statements.model import Operator
from consentry.store.database import Database
from consentry.store.statement_tables import OperatorRow, OperatorSessionRow

__all__ = ["MIN_PASSWORD", "ROLES", "OperatorService"]

ROLES = frozenset({"operator", "vetter"})
MIN_PASSWORD = 12
_USERNAME = re.compile(r"[a-z][a-z0-9._-]{1,63}")


def _session_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _operator(row: OperatorRow) -> Operator:
    return Operator(
        id=row.id,
        username=row.username,
        roles=frozenset(r for r in row.roles.split(",") if r),
        created_at=row.created_at,
    )


class OperatorService:
    def __init__(
        self,
        db: Database,
        clock: Callable[[], datetime] = utc_now,
        *,
        session_ttl: timedelta = timedelta(hours=12),
        hasher: PasswordHasher | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.session_ttl = session_ttl
        self.hasher = hasher or PasswordHasher()
        # Verified against when the user name is unknown (see the module docstring).
        self._dummy = self.hasher.hash(secrets.token_urlsafe(16))

    @staticmethod
    def _check_password(password: str) -> None:
        if len(password) < MIN_PASSWORD:
            raise InvalidInputError(f"a password needs at least {MIN_PASSWORD} characters")
        if len(password) > 1024:
            raise InvalidInputError("a password may have at most 1024 characters")

    def create(self, username: str, password: str, roles: frozenset[str]) -> Operator:
        if not _USERNAME.fullmatch(username):
            raise InvalidInputError(
                "a user name is 2-64 characters: a lower-case letter, then letters, digits, . _ -"
            )
        if not roles or not roles <= ROLES:
            raise InvalidInputError(f"roles must be a non-empty subset of {sorted(ROLES)}")
        self._check_password(password)
        hashed = self.hasher.hash(password)
        now = self.clock()
        try:
            with self.db.write(log=False) as session:
                taken = session.scalar(
                    select(OperatorRow.id).where(OperatorRow.username == username)
                )
                if taken is not None:
                    raise ConflictError(f"an operator {username!r} exists already")
                row = OperatorRow(
                    username=username,
                    password_hash=hashed,
                    roles=",".join(sorted(roles)),
                    created_at=now,
                    password_changed_at=now,
                )
                session.add(row)
                session.flush()
                return _operator(row)
        except StoreError as exc:  # a concurrent create of the same name (unique index)
            if isinstance(exc.__cause__, IntegrityError):
                raise ConflictError(f"an operator {username!r} exists already") from None
            raise

    def operators(self) -> list[Operator]:
        with self.db.read() as session:
            rows = session.scalars(select(OperatorRow).order_by(OperatorRow.username))
            return [_operator(row) for row in rows]

    def get(self, username: str) -> Operator:
        with self.db.read() as session:
            row = session.scalars(
                select(OperatorRow).where(OperatorRow.username == username)
            ).first()
            if row is None:
                raise NotFoundError(f"no operator {username!r}")
            return _operator(row)

    def authenticate(self, username: str, password: str) -> Operator | None:
        with self.db.read() as session:
            row = session.scalars(
                select(OperatorRow).where(OperatorRow.username == username)
            ).first()
            found = (_operator(row), row.password_hash) if row is not None else None
        if found is None:
            try:
                self.hasher.verify(self._dummy, password)
            except VerificationError:
                pass
            return None
        operator, stored = found
        try:
            self.hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        if self.hasher.check_needs_rehash(stored):
            with self.db.write(log=False) as session:
                session.execute(
                    update(OperatorRow)
                    .where(OperatorRow.id == operator.id)
                    .values(password_hash=self.hasher.hash(password))
                )
        return operator

    def start_session(self, operator: Operator) -> str:
        token = secrets.token_urlsafe(32)
        now = self.clock()
        with self.db.write(log=False) as session:
            session.add(
                OperatorSessionRow(
                    token_hash=_session_hash(token),
                    operator_id=operator.id,
                    created_at=now,
                    expires_at=now + self.session_ttl,
                )
            )
        return token

    def session(self, token: str) -> Operator | None:
        if not token or len(token) > 200:
            return None
        with self.db.read() as session:
            found = session.execute(
                select(OperatorSessionRow.ended_at, OperatorSessionRow.expires_at, OperatorRow)
                .join(OperatorRow, OperatorRow.id == OperatorSessionRow.operator_id)
                .where(OperatorSessionRow.token_hash == _session_hash(token))
            ).first()
            if found is None:
                return None
            ended_at, expires_at, row = found
            if ended_at is not None or self.clock() >= expires_at:
                return None
            return _operator(row)

    def end_session(self, token: str) -> None:
        with self.db.write(log=False) as session:
            session.execute(
                update(OperatorSessionRow)
                .where(OperatorSessionRow.token_hash == _session_hash(token))
                .where(OperatorSessionRow.ended_at.is_(None))
                .values(ended_at=self.clock())
            )

    def set_password(self, username: str, password: str) -> None:
        """A new password; every session of the operator ends."""
        self._check_password(password)
        hashed = self.hasher.hash(password)
        now = self.clock()
        with self.db.write(log=False) as session:
            row = session.scalars(
                select(OperatorRow).where(OperatorRow.username == username)
            ).first()
            if row is None:
                raise NotFoundError(f"no operator {username!r}")
            row.password_hash = hashed
            row.password_changed_at = now
            session.execute(
                update(OperatorSessionRow)
                .where(OperatorSessionRow.operator_id == row.id)
                .where(OperatorSessionRow.ended_at.is_(None))
                .values(ended_at=now)
            )
