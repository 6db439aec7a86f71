"""Settings as data: every knob is declared once here, read from ``CONSENTRY_*`` variables.

The CLI's global options override the environment. :data:`SETTINGS` is the table the docs
test reads, so a setting cannot exist without being documented.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from consentry.errors import ConfigurationError

__all__ = ["SETTINGS", "RateLimits", "ServerSettings", "Setting", "Settings", "SmtpTarget"]


@dataclass(frozen=True, slots=True)
class Setting:
    env: str
    default: str
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("CONSENTRY_HOME", "./.consentry", "Registry home: database, keys, indexes."),
    Setting(
        "CONSENTRY_DATABASE_URL",
        "sqlite:///<home>/registry.db",
        "SQLAlchemy URL of the registry database (sqlite:/// or postgresql+psycopg://).",
    ),
    Setting(
        "CONSENTRY_BUSY_TIMEOUT",
        "10",
        "Seconds a writer waits for another writer's lock before giving up.",
    ),
    Setting(
        "CONSENTRY_MAX_FILE_BYTES",
        str(1 << 30),
        "Largest file registered or checked; larger files are refused, not truncated.",
    ),
    Setting(
        "CONSENTRY_LOG_ORIGIN",
        "consentry.local/<8 random hex>",
        "Origin (name) of the tamper-evident log, fixed at `consentry init`; names the key.",
    ),
    # -- the web service and its statements (ServerSettings) ---------------------------------
    Setting(
        "CONSENTRY_SECRET_KEY",
        "(required; --dev: generated once into <home>/dev-secret-key)",
        "Server secret (at least 32 characters): signs forms and cookies, derives e-mail links.",
    ),
    Setting(
        "CONSENTRY_BASE_URL",
        "http://127.0.0.1:8000",
        "Public URL of the service, used in e-mail links; https unless on loopback.",
    ),
    Setting(
        "CONSENTRY_SMTP_URL",
        "(required; --dev: smtp://127.0.0.1:8025)",
        "Outgoing mail server: smtp://[user:pass@]host:port[?starttls=1] or smtps://….",
    ),
    Setting(
        "CONSENTRY_MAIL_FROM",
        "(required; --dev: Consentry <consentry@localhost>)",
        "From address of every e-mail the service sends.",
    ),
    Setting(
        "CONSENTRY_CONFIRM_TTL_HOURS",
        "48",
        "Hours a confirmation link stays valid (links are single-use).",
    ),
    Setting(
        "CONSENTRY_MIN_FILL_SECONDS",
        "3",
        "A signing form sent back faster than this is taken for a bot (stored as fraudulent).",
    ),
    Setting(
        "CONSENTRY_COUNT_INTERVAL",
        "2",
        "Seconds between batched updates of the public signature counts.",
    ),
    Setting(
        "CONSENTRY_ANONYMISE_AFTER_DAYS",
        "90",
        "Days after a statement closes before its signers' personal data is anonymised.",
    ),
    Setting(
        "CONSENTRY_TRUSTED_PROXIES",
        "(none)",
        "Comma-separated CIDRs of reverse proxies whose X-Forwarded-For is believed.",
    ),
    Setting(
        "CONSENTRY_MAX_FORM_BYTES",
        "16384",
        "Largest form post accepted; larger ones are refused before parsing.",
    ),
    Setting(
        "CONSENTRY_RATE_IP_BURST",
        "5/60",
        "At most N signatures per S seconds from one IP (IPv6: one /64) per statement.",
    ),
    Setting(
        "CONSENTRY_RATE_IP_SUSTAINED",
        "50/86400",
        "At most N signatures per S seconds from one IP (IPv6: one /64) per statement.",
    ),
    Setting(
        "CONSENTRY_RATE_DOMAIN_BURST",
        "60/60",
        "At most N signatures per S seconds from one e-mail domain per statement (webmail exempt).",
    ),
    Setting(
        "CONSENTRY_RATE_DOMAIN_SUSTAINED",
        "2000/86400",
        "At most N signatures per S seconds from one e-mail domain per statement (webmail exempt).",
    ),
)


def _int_setting(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(float(raw))
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise ConfigurationError(f"{name} must be positive, got {raw!r}")
    return value


@dataclass(frozen=True, slots=True)
class Settings:
    home: Path
    database_url: str
    busy_timeout: int = 10
    max_file_bytes: int = 1 << 30

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite database file, or ``None`` for PostgreSQL / in-memory databases."""
        if not self.is_sqlite:
            return None
        raw = self.database_url.split(":///", 1)[-1]
        return Path(raw) if raw and raw != ":memory:" else None

    @classmethod
    def load(
        cls, *, home: str | Path | None = None, env: Mapping[str, str] | None = None
    ) -> Settings:
        """Settings from explicit options first, then the environment, then defaults."""
        env = os.environ if env is None else env
        home_path = Path(home or env.get("CONSENTRY_HOME") or "./.consentry").expanduser()
        url = env.get("CONSENTRY_DATABASE_URL") or f"sqlite:///{home_path / 'registry.db'}"
        if not (url.startswith("sqlite") or url.startswith("postgresql")):
            raise ConfigurationError(
                f"CONSENTRY_DATABASE_URL must be a sqlite:/// or postgresql+psycopg:// URL, "
                f"got {url.split(':', 1)[0]}:…"
            )
        return cls(
            home=home_path,
            database_url=url,
            busy_timeout=_int_setting(env, "CONSENTRY_BUSY_TIMEOUT", 10),
            max_file_bytes=_int_setting(env, "CONSENTRY_MAX_FILE_BYTES", 1 << 30),
        )


# -- the web service -------------------------------------------------------------------------

_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
_MIN_SECRET = 32


def parse_rate(text: str, *, name: str = "rate") -> tuple[int, int]:
    """``"N/S"`` (at most N submissions per S seconds) as ``(N, S)``; both positive integers."""
    count, sep, seconds = text.strip().partition("/")
    try:
        pair = (int(count), int(seconds))
    except ValueError:
        pair = (0, 0)
    if not sep or pair[0] <= 0 or pair[1] <= 0:
        raise ConfigurationError(f"{name} must look like N/S (e.g. 5/60), got {text!r}")
    return pair


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Per-statement submission limits; ``(N, S)`` = at most N submissions per S seconds."""

    ip_burst: tuple[int, int] = (5, 60)
    ip_sustained: tuple[int, int] = (50, 86400)
    domain_burst: tuple[int, int] = (60, 60)
    domain_sustained: tuple[int, int] = (2000, 86400)

    def as_json(self) -> dict[str, str]:
        return {name: f"{n}/{s}" for name, (n, s) in self.items()}

    def items(self) -> list[tuple[str, tuple[int, int]]]:
        return [
            ("ip_burst", self.ip_burst),
            ("ip_sustained", self.ip_sustained),
            ("domain_burst", self.domain_burst),
            ("domain_sustained", self.domain_sustained),
        ]

    @classmethod
    def from_json(cls, obj: Mapping[str, str], *, base: RateLimits | None = None) -> RateLimits:
        """Limits from ``{"ip_burst": "5/60", …}``; missing keys come from ``base``."""
        base = base or cls()
        known = {name for name, _ in base.items()}
        unknown = sorted(set(obj) - known)
        if unknown:
            raise ConfigurationError(
                f"unknown rate limit {unknown[0]!r}; known: {', '.join(sorted(known))}"
            )
        values = {name: parse_rate(obj[name], name=name) for name in obj}
        return cls(**{name: values.get(name, pair) for name, pair in base.items()})


@dataclass(frozen=True, slots=True)
class SmtpTarget:
    """An outgoing mail server parsed from ``CONSENTRY_SMTP_URL``."""

    host: str
    port: int
    security: str  # "none", "starttls" or "ssl"
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, url: str) -> SmtpTarget:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ConfigurationError(
                "CONSENTRY_SMTP_URL must look like smtp://[user:pass@]host:port[?starttls=1] "
                "or smtps://host:port"
            )
        try:
            port = parts.port
        except ValueError:
            raise ConfigurationError("CONSENTRY_SMTP_URL has an invalid port") from None
        query = parse_qs(parts.query)
        starttls = query.get("starttls", ["0"])[-1].lower() in ("1", "true", "yes")
        if parts.scheme == "smtps":
            security, default_port = "ssl", 465
        else:
            security, default_port = ("starttls" if starttls else "none"), 25
        return cls(
            host=parts.hostname,
            port=port or default_port,
            security=security,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


def _float_setting(
    env: Mapping[str, str], name: str, default: float, problems: list[str], *, zero_ok: bool
) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        problems.append(f"{name} must be a number, got {raw!r}")
        return default
    if (
        value != value
        or value in (float("inf"), float("-inf"))
        or value < 0
        or (value == 0 and not zero_ok)
    ):
        problems.append(f"{name} must be a positive number, got {raw!r}")
        return default
    return value


def _dev_secret(home: Path) -> str:
    """The --dev secret: generated once, kept (mode 0600) in the home so restarts keep links."""
    path = home / "dev-secret-key"
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    home.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    # O_EXCL: two processes starting at once must not overwrite each other's key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="utf-8").strip()
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(key + "\n")
    return key


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host in _LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Settings of ``consentry serve``, the mail worker and the statements service."""

    registry: Settings
    dev: bool
    secret_key: str = field(repr=False)
    base_url: str = "http://127.0.0.1:8000"
    smtp_url: str = "smtp://127.0.0.1:8025"
    mail_from: str = "Consentry <consentry@localhost>"
    confirm_ttl: timedelta = timedelta(hours=48)
    min_fill_seconds: float = 3.0
    count_interval: float = 2.0
    anonymise_after: timedelta = timedelta(days=90)
    trusted_proxies: tuple[str, ...] = ()
    max_form_bytes: int = 16384
    rate_limits: RateLimits = field(default_factory=RateLimits)

    @property
    def smtp(self) -> SmtpTarget:
        return SmtpTarget.parse(self.smtp_url)

    @classmethod
    def load(
        cls,
        registry: Settings,
        *,
        dev: bool,
        env: Mapping[str, str] | None = None,
        check: bool = True,
    ) -> ServerSettings:
        """Server settings from the environment.

        Outside ``dev`` (and with ``check``) this refuses, naming every problem at once, a
        missing or short secret key, a missing SMTP URL or From address, and a base URL that
        is neither https nor loopback. ``check=False`` is for commands that neither serve nor
        send mail (statement administration), which must work without the mail settings.
        """
        env = os.environ if env is None else env
        problems: list[str] = []
        strict = check and not dev

        secret = env.get("CONSENTRY_SECRET_KEY", "")
        if not secret and dev:
            secret = _dev_secret(registry.home)
        if strict and len(secret) < _MIN_SECRET:
            problems.append(
                f"CONSENTRY_SECRET_KEY must be at least {_MIN_SECRET} characters "
                f"({'missing' if not secret else f'got {len(secret)}'}); "
                "generate one with `python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
            )

        base_url = (env.get("CONSENTRY_BASE_URL") or "http://127.0.0.1:8000").rstrip("/")
        base = urlsplit(base_url)
        if base.scheme not in ("http", "https") or not base.hostname:
            problems.append(f"CONSENTRY_BASE_URL must be an http(s) URL, got {base_url!r}")
        elif strict and base.scheme != "https" and not _is_loopback(base.hostname):
            problems.append(
                f"CONSENTRY_BASE_URL must use https outside --dev (got {base_url!r}); "
                "links in e-mails would travel in clear"
            )

        smtp_url = env.get("CONSENTRY_SMTP_URL", "")
        if not smtp_url:
            if strict:
                problems.append("CONSENTRY_SMTP_URL is required outside --dev")
            smtp_url = "smtp://127.0.0.1:8025"
        else:
            try:
                SmtpTarget.parse(smtp_url)
            except ConfigurationError as exc:
                problems.append(str(exc))

        mail_from = env.get("CONSENTRY_MAIL_FROM", "")
        if not mail_from:
            if strict:
                problems.append("CONSENTRY_MAIL_FROM is required outside --dev")
            mail_from = "Consentry <consentry@localhost>"

        ttl_hours = _float_setting(env, "CONSENTRY_CONFIRM_TTL_HOURS", 48, problems, zero_ok=False)
        min_fill = _float_setting(env, "CONSENTRY_MIN_FILL_SECONDS", 3, problems, zero_ok=True)
        interval = _float_setting(env, "CONSENTRY_COUNT_INTERVAL", 2, problems, zero_ok=False)
        anon_days = _float_setting(
            env, "CONSENTRY_ANONYMISE_AFTER_DAYS", 90, problems, zero_ok=True
        )

        proxies: list[str] = []
        for raw in (env.get("CONSENTRY_TRUSTED_PROXIES") or "").split(","):
            if not raw.strip():
                continue
            try:
                proxies.append(str(ipaddress.ip_network(raw.strip(), strict=False)))
            except ValueError:
                problems.append(f"CONSENTRY_TRUSTED_PROXIES: {raw.strip()!r} is not an IP/CIDR")

        max_form = 16384
        try:
            max_form = _int_setting(env, "CONSENTRY_MAX_FORM_BYTES", 16384)
        except ConfigurationError as exc:
            problems.append(str(exc))

        limits: dict[str, tuple[int, int]] = {}
        for name, default in RateLimits().items():
            var = f"CONSENTRY_RATE_{name.upper()}"
            try:
                limits[name] = parse_rate(env.get(var) or f"{default[0]}/{default[1]}", name=var)
            except ConfigurationError as exc:
                problems.append(str(exc))
                limits[name] = default

        if problems:
            raise ConfigurationError("; ".join(problems))
        return cls(
            registry=registry,
            dev=dev,
            secret_key=secret,
            base_url=base_url,
            smtp_url=smtp_url,
            mail_from=mail_from,
            confirm_ttl=timedelta(hours=ttl_hours),
            min_fill_seconds=min_fill,
            count_interval=interval,
            anonymise_after=timedelta(days=anon_days),
            trusted_proxies=tuple(proxies),
            max_form_bytes=max_form,
            rate_limits=RateLimits(**limits),
        )
