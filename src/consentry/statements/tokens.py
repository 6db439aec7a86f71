"""Link tokens: random, single-use, stored only as their SHA-256.

A token is ``base64url(HMAC-SHA256(secret, purpose || nonce))`` for a fresh random nonce. The
database keeps the token's SHA-256 (to look it up) and, only until the e-mail carrying it
is sent, the nonce (so the outbox worker can put the link in the message). Someone who reads
the database learns neither a token nor, without the server secret, a way to make one; a
guessed or altered token matches no hash.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from typing import Literal

from consentry.errors import ConfigurationError, InvalidInputError

__all__ = [
    "TOKEN_PATTERN",
    "TokenError",
    "TokenPurpose",
    "TokenReason",
    "derive_token",
    "hash_token",
    "new_nonce",
]

TokenPurpose = Literal["confirm", "withdraw"]
TokenReason = Literal["unknown", "expired", "used"]

# 32 bytes of HMAC in unpadded base64url; anything else cannot be one of our tokens.
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}")


class TokenError(InvalidInputError):
    """A confirmation or withdraw link that cannot be used: ``reason`` says why."""

    def __init__(self, reason: TokenReason, message: str | None = None) -> None:
        self.reason: TokenReason = reason
        default = {
            "unknown": "this link is not valid (mistyped, forged or no longer on file)",
            "expired": "this link has expired",
            "used": "this link has already been used",
        }[reason]
        super().__init__(message or default)


def new_nonce() -> str:
    return secrets.token_urlsafe(16)


def derive_token(secret: str, purpose: TokenPurpose, nonce: str) -> str:
    if not secret:
        raise ConfigurationError("CONSENTRY_SECRET_KEY is needed to make links in e-mails")
    mac = hmac.new(secret.encode(), f"consentry-link\0{purpose}\0{nonce}".encode(), "sha256")
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode("ascii")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
