"""Operator accounts (argon2id hashes, roles, hashed expiring sessions) and server settings."""

from __future__ import annotations

import hashlib
import os
import stat
from datetime import timedelta
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select, update

from consentry.config import SETTINGS, RateLimits, ServerSettings, Settings, SmtpTarget, parse_rate
from consentry.errors import ConfigurationError, ConflictError, InvalidInputError, NotFoundError
from consentry.statements import OperatorService
from consentry.store.database import Database
from consentry.store.statement_tables import OperatorRow, OperatorSessionRow
from statements_support import Clock

PASSWORD = "correct horse battery staple"  # noqa: S105 - a test account's password
# Cheap parameters keep the suite fast; the production defaults are argon2-cffi's (RFC 9106).
FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def operators(db: Database, clock: Clock) -> OperatorService:
    return OperatorService(db, clock, hasher=FAST)


def test_passwords_are_stored_as_argon2id_hashes(operators: OperatorService, db: Database) -> None:
    created = operators.create("orla", PASSWORD, frozenset({"operator", "vetter"}))
    assert (created.username, created.roles) == ("orla", frozenset({"operator", "vetter"}))
    assert created.has("vetter")
    with db.read() as session:
        stored = session.scalars(select(OperatorRow.password_hash)).one()
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    assert operators.authenticate("orla", PASSWORD) == created
    assert operators.authenticate("orla", PASSWORD + "!") is None
    assert operators.authenticate("nobody", PASSWORD) is None
    assert operators.authenticate("orla", "") is None


def test_the_default_hasher_is_argon2id(db: Database) -> None:
    service = OperatorService(db)
    service.create("vera", PASSWORD, frozenset({"vetter"}))
    assert service.authenticate("vera", PASSWORD) is not None
    with db.read() as session:
        assert session.scalars(select(OperatorRow.password_hash)).one().startswith("$argon2id$")


def test_weak_hashes_are_upgraded_on_log_in(db: Database, clock: Clock) -> None:
    OperatorService(db, clock, hasher=FAST).create("orla", PASSWORD, frozenset({"operator"}))
    stronger = PasswordHasher(time_cost=2, memory_cost=16, parallelism=1)
    assert OperatorService(db, clock, hasher=stronger).authenticate("orla", PASSWORD) is not None
    with db.read() as session:
        stored = session.scalars(select(OperatorRow.password_hash)).one()
    assert "m=16,t=2" in stored


@pytest.mark.parametrize(
    ("username", "password", "roles", "message"),
    [
        ("orla", "short", {"operator"}, "at least 12"),
        ("Orla", PASSWORD, {"operator"}, "user name"),
        ("o", PASSWORD, {"operator"}, "user name"),
        ("orla smith", PASSWORD, {"operator"}, "user name"),
        ("orla", PASSWORD, set(), "roles"),
        ("orla", PASSWORD, {"admin"}, "roles"),
        ("orla", "x" * 1025, {"operator"}, "at most 1024"),
    ],
)
def test_bad_accounts_are_refused(
    operators: OperatorService, username: str, password: str, roles: set[str], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        operators.create(username, password, frozenset(roles))


def test_user_names_are_unique(operators: OperatorService) -> None:
    operators.create("orla", PASSWORD, frozenset({"operator"}))
    with pytest.raises(ConflictError):
        operators.create("orla", PASSWORD, frozenset({"vetter"}))
    assert [o.username for o in operators.operators()] == ["orla"]
    with pytest.raises(NotFoundError):
        operators.get("nobody")


def test_sessions_are_hashed_and_expire(
    operators: OperatorService, db: Database, clock: Clock
) -> None:
    orla = operators.create("orla", PASSWORD, frozenset({"operator"}))
    token = operators.start_session(orla)
    assert len(token) >= 40
    with db.read() as session:
        stored = session.scalars(select(OperatorSessionRow.token_hash)).one()
    assert stored == hashlib.sha256(token.encode()).hexdigest()
    assert operators.session(token) == orla
    for forged in ("", "x" * 500, token[:-1], token + "x", stored):
        assert operators.session(forged) is None
    clock.advance(hours=12, seconds=-1)
    assert operators.session(token) == orla
    clock.advance(seconds=1)
    assert operators.session(token) is None


def test_ending_a_session_and_changing_the_password(
    operators: OperatorService, clock: Clock
) -> None:
    orla = operators.create("orla", PASSWORD, frozenset({"operator"}))
    first, second = operators.start_session(orla), operators.start_session(orla)
    operators.end_session(first)
    assert operators.session(first) is None
    assert operators.session(second) == orla
    vera = operators.create("vera", PASSWORD, frozenset({"vetter"}))
    other = operators.start_session(vera)
    operators.set_password("orla", "a brand new passphrase")
    assert operators.session(second) is None  # every session of orla ended
    assert operators.session(other) == vera  # others untouched
    assert operators.authenticate("orla", PASSWORD) is None
    assert operators.authenticate("orla", "a brand new passphrase") == orla
    with pytest.raises(NotFoundError):
        operators.set_password("nobody", "a brand new passphrase")
    with pytest.raises(InvalidInputError):
        operators.set_password("orla", "short")


def test_a_session_of_a_tampered_row_is_refused(operators: OperatorService, db: Database) -> None:
    orla = operators.create("orla", PASSWORD, frozenset({"operator"}))
    token = operators.start_session(orla)
    with db.write(log=False) as session:
        session.execute(
            update(OperatorSessionRow).values(expires_at=operators.clock() - timedelta(seconds=1))
        )
    assert operators.session(token) is None


# -- server settings ---------------------------------------------------------------------------


def _registry(tmp_path: Path) -> Settings:
    return Settings.load(env={"CONSENTRY_HOME": str(tmp_path / "home")})


def test_outside_dev_every_insecure_setting_is_named_at_once(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as caught:
        ServerSettings.load(
            _registry(tmp_path),
            dev=False,
            env={"CONSENTRY_SECRET_KEY": "short", "CONSENTRY_BASE_URL": "http://consentry.example"},
        )
    message = str(caught.value)
    for name in ("CONSENTRY_SECRET_KEY", "CONSENTRY_SMTP_URL", "CONSENTRY_MAIL_FROM", "https"):
        assert name in message
    assert "\n" not in message


def test_a_complete_production_configuration(tmp_path: Path) -> None:
    env = {
        "CONSENTRY_SECRET_KEY": "k" * 40,
        "CONSENTRY_BASE_URL": "https://sign.example/",
        "CONSENTRY_SMTP_URL": "smtp://mailer:p%40ss@mail.example:587?starttls=1",
        "CONSENTRY_MAIL_FROM": "Consentry <no-reply@sign.example>",
        "CONSENTRY_CONFIRM_TTL_HOURS": "24",
        "CONSENTRY_MIN_FILL_SECONDS": "0",
        "CONSENTRY_COUNT_INTERVAL": "0.5",
        "CONSENTRY_ANONYMISE_AFTER_DAYS": "30",
        "CONSENTRY_TRUSTED_PROXIES": "10.0.0.1, 192.168.0.0/16",
        "CONSENTRY_MAX_FORM_BYTES": "8192",
        "CONSENTRY_RATE_IP_BURST": "3/30",
    }
    s = ServerSettings.load(_registry(tmp_path), dev=False, env=env)
    assert s.base_url == "https://sign.example"
    assert s.smtp == SmtpTarget("mail.example", 587, "starttls", "mailer", "p@ss")
    assert (s.confirm_ttl, s.min_fill_seconds, s.count_interval) == (timedelta(hours=24), 0, 0.5)
    assert s.anonymise_after == timedelta(days=30)
    assert s.trusted_proxies == ("10.0.0.1/32", "192.168.0.0/16")
    assert s.max_form_bytes == 8192
    assert s.rate_limits == RateLimits(ip_burst=(3, 30))
    assert "k" * 40 not in repr(s)  # the secret stays out of logs and tracebacks
    loopback = ServerSettings.load(
        _registry(tmp_path), dev=False, env=env | {"CONSENTRY_BASE_URL": "http://127.0.0.1:8000"}
    )
    assert loopback.base_url == "http://127.0.0.1:8000"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CONSENTRY_CONFIRM_TTL_HOURS", "0"),
        ("CONSENTRY_CONFIRM_TTL_HOURS", "soon"),
        ("CONSENTRY_MIN_FILL_SECONDS", "-1"),
        ("CONSENTRY_COUNT_INTERVAL", "nan"),
        ("CONSENTRY_TRUSTED_PROXIES", "10.0.0.0/33"),
        ("CONSENTRY_MAX_FORM_BYTES", "-5"),
        ("CONSENTRY_RATE_IP_BURST", "5"),
        ("CONSENTRY_RATE_DOMAIN_SUSTAINED", "0/60"),
        ("CONSENTRY_BASE_URL", "ftp://x"),
    ],
)
def test_malformed_settings_are_refused_even_in_dev(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        ServerSettings.load(_registry(tmp_path), dev=True, env={name: value})


def test_dev_generates_one_secret_and_keeps_it_private(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    first = ServerSettings.load(registry, dev=True, env={})
    second = ServerSettings.load(registry, dev=True, env={})
    assert len(first.secret_key) >= 32
    assert first.secret_key == second.secret_key
    path = registry.home / "dev-secret-key"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert (first.smtp_url, first.base_url) == ("smtp://127.0.0.1:8025", "http://127.0.0.1:8000")


def test_check_false_is_for_administration_without_mail_settings(tmp_path: Path) -> None:
    s = ServerSettings.load(_registry(tmp_path), dev=False, env={}, check=False)
    assert s.secret_key == ""


def test_rates_parse_and_every_server_setting_is_declared() -> None:
    assert parse_rate(" 5/60 ") == (5, 60)
    for bad in ("5", "a/b", "0/60", "5/0", "-1/5"):
        with pytest.raises(ConfigurationError):
            parse_rate(bad)
    declared = {s.env for s in SETTINGS}
    for name in (
        "CONSENTRY_SECRET_KEY",
        "CONSENTRY_BASE_URL",
        "CONSENTRY_SMTP_URL",
        "CONSENTRY_MAIL_FROM",
        "CONSENTRY_CONFIRM_TTL_HOURS",
        "CONSENTRY_MIN_FILL_SECONDS",
        "CONSENTRY_COUNT_INTERVAL",
        "CONSENTRY_ANONYMISE_AFTER_DAYS",
        "CONSENTRY_TRUSTED_PROXIES",
        "CONSENTRY_MAX_FORM_BYTES",
        "CONSENTRY_RATE_IP_BURST",
        "CONSENTRY_RATE_IP_SUSTAINED",
        "CONSENTRY_RATE_DOMAIN_BURST",
        "CONSENTRY_RATE_DOMAIN_SUSTAINED",
    ):
        assert name in declared
    with pytest.raises(ConfigurationError, match="unknown rate limit"):
        RateLimits.from_json({"ip_brust": "5/60"})
