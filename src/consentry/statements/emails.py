"""E-mail addresses: syntax, and the canonical form that finds one mailbox behind many spellings.

Syntax is checked by ``email-validator`` (RFC 5321/5322 with the usual real-world limits),
with DNS deliverability checks off: signing must not wait on DNS, and a dead domain simply
never confirms. The canonical form is what duplicates are found by:

1. the whole address in lower case (no real provider has case-sensitive mailboxes);
2. the domain in its ASCII (IDNA) form, aliases folded (``googlemail.com`` → ``gmail.com``);
3. a ``+tag`` sub-address dropped (``ann+petition@`` is ``ann@``) on every domain;
4. dots dropped from the local part where the provider ignores them (Gmail).

A false merge would stop a second person from signing, so only rules providers document are
listed in :data:`DOMAIN_RULES`.
"""

from __future__ import annotations

from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email

from consentry.errors import InvalidInputError

__all__ = ["DOMAIN_RULES", "CanonicalEmail", "DomainRule", "canonical_email", "mask_email"]


@dataclass(frozen=True, slots=True)
class DomainRule:
    alias_of: str | None = None  # this domain delivers to the same mailboxes as alias_of
    ignores_dots: bool = False  # the provider ignores dots in the local part


DOMAIN_RULES: dict[str, DomainRule] = {
    "gmail.com": DomainRule(ignores_dots=True),
    "googlemail.com": DomainRule(alias_of="gmail.com", ignores_dots=True),
}


@dataclass(frozen=True, slots=True)
class CanonicalEmail:
    address: str  # as normalised by email-validator (what mail is sent to)
    canonical: str  # what duplicates are found by
    domain: str  # the canonical domain (rate limits and blocklists use it)


def canonical_domain(domain: str) -> str:
    lowered = domain.strip().lower().removeprefix("@").rstrip(".")
    try:
        lowered = lowered.encode("idna").decode("ascii")
    except UnicodeError:
        pass  # left as typed; validate_email has refused truly malformed domains already
    rule = DOMAIN_RULES.get(lowered)
    return rule.alias_of if rule is not None and rule.alias_of else lowered


def canonical_email(raw: str) -> CanonicalEmail:
    """Validate ``raw`` and return its canonical form; InvalidInputError names the problem."""
    text = raw.strip()
    if not text:
        raise InvalidInputError("an e-mail address is required")
    if len(text) > 320:
        raise InvalidInputError("the e-mail address is too long")
    try:
        # strict: also the RFC 5321 length limits (64 octets before the @), which mail
        # servers enforce.
        valid = validate_email(text, check_deliverability=False, strict=True)
    except EmailNotValidError as exc:
        raise InvalidInputError(f"not a valid e-mail address: {exc}") from None
    domain = canonical_domain(valid.ascii_domain or valid.domain)
    local = valid.local_part.lower().split("+", 1)[0]
    rule = DOMAIN_RULES.get(domain)
    if rule is not None and rule.ignores_dots:
        local = local.replace(".", "")
    if not local:
        raise InvalidInputError("not a valid e-mail address: nothing before the @")
    return CanonicalEmail(address=valid.normalized, canonical=f"{local}@{domain}", domain=domain)


def mask_email(address: str) -> str:
    """``ann.author@example.org`` → ``a********@example.org``: recognisable, not readable."""
    local, sep, domain = address.rpartition("@")
    if not sep:
        return "***"
    return f"{local[:1]}{'*' * max(len(local) - 1, 3)}@{domain}"
