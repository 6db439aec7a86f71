"""CSRF tokens, cookie flags, security headers and the client address behind trusted proxies.

Three kinds of form and how each is protected:

1. **The public sign form** has no session. Its hidden ``form_token`` is an itsdangerous
   signature (HMAC-SHA1 keyed by a derivation of the secret key) over ``{slug, nonce}`` with
   the issue time; the same nonce is set as a double-submit cookie. A POST is accepted only if
   the signature verifies, names the statement posted to, is younger than
   :data:`FORM_MAX_AGE`, and its nonce equals the cookie's. The issue time is also the start of
   the minimum fill time (``form_age_seconds``): a bot that re-uses an old token gets around
   the timer only by waiting, which is the point of the timer.
2. **Confirm / withdraw pages** work the same way, with the signature bound to a hash of the
   e-mailed token instead of a slug, so a page issued for one link cannot post to another.
3. **Admin forms** carry a synchronizer token derived from the operator's session token
   (HMAC-SHA256 with the secret key): it is unguessable without the session cookie, changes
   with every login, and needs no server-side storage.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer

__all__ = [
    "FORM_COOKIE",
    "FORM_MAX_AGE",
    "SESSION_COOKIE",
    "ClientAddress",
    "CsrfError",
    "ForbiddenError",
    "FormTokens",
    "LoginRequiredError",
    "admin_csrf_token",
    "check_admin_csrf",
    "cookie_flags",
    "security_headers",
]

FORM_COOKIE: Final = "consentry_form"
SESSION_COOKIE: Final = "consentry_session"
# A form older than a day is refused; the reader reloads the page (the error page says so).
FORM_MAX_AGE: Final = 24 * 3600


class CsrfError(Exception):
    """A form post without a valid token; answered with 403 and a page that says to reload."""


class LoginRequiredError(Exception):
    """An admin page without a valid operator session; answered with a redirect to login."""


class ForbiddenError(Exception):
    """The signed-in operator lacks the role for this page; answered with 403."""


@dataclass(frozen=True, slots=True)
class IssuedForm:
    token: str  # goes into the hidden field
    nonce: str  # goes into the double-submit cookie


class FormTokens:
    """Signed, timed form tokens for forms that have no session (see the module docstring)."""

    def __init__(self, secret_key: str, *, clock: Callable[[], float] = time.time) -> None:
        class _Signer(TimestampSigner):
            # itsdangerous's expiry check, on our clock (tests move it; production: time.time)
            def get_timestamp(self) -> int:
                return int(clock())

        self._serializer = URLSafeTimedSerializer(
            secret_key, salt="consentry.web.form", signer=_Signer
        )
        self._clock = clock

    def issue(self, scope: str, nonce: str | None = None) -> IssuedForm:
        """A token for a form bound to ``scope`` (``sign:<slug>`` or ``token:<hash>``)."""
        nonce = nonce or secrets.token_urlsafe(18)
        # The issue time in milliseconds (signed with the rest) measures the fill time more
        # finely than itsdangerous's whole-second timestamp, which only serves the expiry.
        payload = {"s": scope, "n": nonce, "t": int(self._clock() * 1000)}
        return IssuedForm(self._serializer.dumps(payload), nonce)

    def verify(self, token: str, scope: str, cookie: str | None) -> float:
        """Check a posted token; returns the form's age in seconds or raises CsrfError."""
        if not token or not cookie:
            raise CsrfError("the form token or its cookie is missing")
        try:
            payload = self._serializer.loads(token, max_age=FORM_MAX_AGE)
        except SignatureExpired:
            raise CsrfError("the form has expired") from None
        except BadSignature:
            raise CsrfError("the form token is not valid") from None
        if not isinstance(payload, dict) or payload.get("s") != scope:
            raise CsrfError("the form token belongs to another form")
        nonce, issued_ms = payload.get("n"), payload.get("t")
        if not isinstance(nonce, str) or not hmac.compare_digest(nonce, cookie):
            raise CsrfError("the form token does not match its cookie")
        if not isinstance(issued_ms, int):
            raise CsrfError("the form token is not valid")
        return max(0.0, self._clock() - issued_ms / 1000)


def token_scope(token: str) -> str:
    """The scope of a confirm / withdraw page: a hash, so the e-mailed token is not in it."""
    return "token:" + hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()[:32]


def admin_csrf_token(secret_key: str, session_token: str) -> str:
    key = hashlib.sha256(b"consentry.web.admin-csrf\0" + secret_key.encode()).digest()
    return hmac.new(key, session_token.encode(), hashlib.sha256).hexdigest()


def check_admin_csrf(secret_key: str, session_token: str, posted: str | None) -> None:
    if not posted or not hmac.compare_digest(admin_csrf_token(secret_key, session_token), posted):
        raise CsrfError("the admin form token is missing or not valid")


def cookie_flags(*, dev: bool) -> dict[str, Any]:
    """Flags for every cookie we set: never readable by scripts, not sent cross-site on POST.

    ``Secure`` is left off only in ``--dev``, where the service runs on plain-HTTP loopback.
    """
    return {"httponly": True, "samesite": "lax", "secure": not dev}


_CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; object-src 'none'"
)


def security_headers(*, dev: bool, frameable: bool) -> list[tuple[bytes, bytes]]:
    """Headers sent with every response; ``frameable`` only for the embeddable widget."""
    headers = [
        (b"x-content-type-options", b"nosniff"),
        # Confirmation and withdraw URLs carry a secret: never leak them in a Referer.
        (b"referrer-policy", b"no-referrer"),
        (b"cross-origin-opener-policy", b"same-origin"),
        (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), interest-cohort=()"),
    ]
    if frameable:
        headers.append((b"content-security-policy", (_CSP + "; frame-ancestors *").encode()))
    else:
        headers.append((b"content-security-policy", (_CSP + "; frame-ancestors 'none'").encode()))
        headers.append((b"x-frame-options", b"DENY"))
    if not dev:
        headers.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))
    return headers


class ClientAddress:
    """The client's IP address, believing ``X-Forwarded-For`` only from trusted proxies.

    The header is read right to left: each hop appended by a trusted proxy is skipped, and the
    first address not in a trusted network is the client. A client cannot forge its address by
    sending its own header, because the left part of the list is never believed blindly.
    """

    def __init__(self, trusted_proxies: Iterable[str]) -> None:
        self._networks = tuple(
            ipaddress.ip_network(p.strip(), strict=False) for p in trusted_proxies
        )

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self._networks)

    def resolve(self, peer: str | None, forwarded_for: Iterable[str]) -> str:
        peer = peer or "0.0.0.0"  # noqa: S104 - a placeholder address, never bound to
        if not self._networks or not self._trusted(peer):
            return peer
        hops = [h.strip() for value in forwarded_for for h in value.split(",") if h.strip()]
        for hop in reversed(hops):
            try:
                ipaddress.ip_address(hop)
            except ValueError:
                return peer  # a malformed hop: do not guess beyond what we can trust
            if not self._trusted(hop):
                return hop
        return hops[0] if hops else peer
