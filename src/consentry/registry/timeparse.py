"""Parsing the times users type: ISO 8601 dates and datetimes, always ending up aware UTC."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from consentry.errors import InvalidInputError

__all__ = ["now", "parse_time"]


def now() -> datetime:
    return datetime.now(UTC)


def parse_time(text: str, *, end_of_day: bool = False) -> datetime:
    """Parse ``2027-12-31``, ``2027-12-31T12:00:00+02:00`` or ``now`` (naive means UTC).

    A bare date means the start of that day in UTC, or with ``end_of_day`` the start of the
    next day — so ``--expires 2027-12-31`` still allows use on 31 December.
    """
    raw = text.strip()
    if raw.lower() == "now":
        return now()
    try:
        if len(raw) == 10:
            start = datetime.combine(date.fromisoformat(raw), time(0), tzinfo=UTC)
            return start + timedelta(days=1) if end_of_day else start
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInputError(
            f"malformed time {text!r}; use ISO 8601, e.g. 2027-12-31 or 2027-12-31T12:00:00Z"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)
