"""Per-statement rate limits on signing, counted per IP (IPv6: per /64) and per e-mail domain.

Each limit is "at most N submissions in the last S seconds", once for a short burst window
and once for a long sustained one. A batch of submissions asks the database once per
statement and dimension (``GROUP BY`` over the keys in the batch, served by the
``(statement_id, ip_key, created_at)`` and ``(statement_id, email_domain, created_at)``
indexes), then counts the batch's own submissions in memory, in order. Every stored
submission counts, fraudulent ones included: a bot that keeps trying stays limited.

Webmail domains are exempt from the domain limits: thousands of honest signers share them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from consentry.config import RateLimits
from consentry.store.statement_tables import SignatureRow

__all__ = ["WEBMAIL_DOMAINS", "RateLimiter", "ip_key"]

WEBMAIL_DOMAINS = frozenset(
    {
        "163.com",
        "aol.com",
        "btinternet.com",
        "fastmail.com",
        "free.fr",
        "gmail.com",
        "gmx.de",
        "gmx.net",
        "hotmail.co.uk",
        "hotmail.com",
        "hotmail.fr",
        "icloud.com",
        "laposte.net",
        "live.com",
        "mac.com",
        "mail.ru",
        "me.com",
        "msn.com",
        "orange.fr",
        "outlook.com",
        "pm.me",
        "proton.me",
        "protonmail.com",
        "qq.com",
        "t-online.de",
        "web.de",
        "yahoo.co.uk",
        "yahoo.com",
        "yahoo.fr",
        "yandex.ru",
        "zoho.com",
    }
)


def ip_key(ip: str) -> str:
    """What the IP limits count: the IPv4 address, or the /64 an IPv6 address belongs to.

    One IPv6 subscriber usually gets a whole /64, so counting single addresses would let one
    machine sign 2**64 times. ValueError for text that is not an IP address.
    """
    address = ipaddress.ip_address(ip.strip())
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
    return str(address)


@dataclass
class _Counts:
    burst: int = 0
    sustained: int = 0


@dataclass
class RateLimiter:
    """Counts for one statement and one batch; :meth:`breach` then :meth:`record` per row."""

    limits: RateLimits
    by_ip: dict[str, _Counts] = field(default_factory=dict)
    by_domain: dict[str, _Counts] = field(default_factory=dict)

    @classmethod
    def load(
        cls,
        session: Session,
        statement_id: int,
        limits: RateLimits,
        now: datetime,
        ip_keys: Collection[str],
        domains: Collection[str],
    ) -> RateLimiter:
        limited_domains = [d for d in set(domains) if d not in WEBMAIL_DOMAINS]
        return cls(
            limits,
            _recent(session, statement_id, SignatureRow.ip_key, set(ip_keys), now, limits.ip_burst,
                    limits.ip_sustained),
            _recent(session, statement_id, SignatureRow.email_domain, limited_domains, now,
                    limits.domain_burst, limits.domain_sustained),
        )  # fmt: skip

    def breach(self, ip: str, domain: str) -> str | None:
        """The first limit one more submission would break (a fraud reason), or None."""
        ip_counts = self.by_ip.get(ip, _Counts())
        if ip_counts.burst + 1 > self.limits.ip_burst[0]:
            return "rate-ip-burst"
        if ip_counts.sustained + 1 > self.limits.ip_sustained[0]:
            return "rate-ip-sustained"
        if domain in WEBMAIL_DOMAINS:
            return None
        domain_counts = self.by_domain.get(domain, _Counts())
        if domain_counts.burst + 1 > self.limits.domain_burst[0]:
            return "rate-domain-burst"
        if domain_counts.sustained + 1 > self.limits.domain_sustained[0]:
            return "rate-domain-sustained"
        return None

    def record(self, ip: str, domain: str) -> None:
        for table, key in ((self.by_ip, ip), (self.by_domain, domain)):
            counts = table.setdefault(key, _Counts())
            counts.burst += 1
            counts.sustained += 1


def _recent(
    session: Session,
    statement_id: int,
    column: InstrumentedAttribute[Any],
    keys: Iterable[str],
    now: datetime,
    burst: tuple[int, int],
    sustained: tuple[int, int],
) -> dict[str, _Counts]:
    wanted = sorted(keys)
    if not wanted:
        return {}
    burst_start = now - timedelta(seconds=burst[1])
    sustained_start = now - timedelta(seconds=sustained[1])
    earliest = min(burst_start, sustained_start)
    rows = session.execute(
        select(
            column,
            func.sum(case((SignatureRow.created_at >= burst_start, 1), else_=0)),
            func.sum(case((SignatureRow.created_at >= sustained_start, 1), else_=0)),
        )
        .where(
            SignatureRow.statement_id == statement_id,
            column.in_(wanted),
            SignatureRow.created_at >= earliest,
        )
        .group_by(column)
    ).all()
    return {key: _Counts(int(b or 0), int(s or 0)) for key, b, s in rows}
