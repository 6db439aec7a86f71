"""Canonical e-mail addresses: one mailbox, many spellings; and what is not an address."""

from __future__ import annotations

import pytest

from consentry.errors import InvalidInputError
from consentry.statements.emails import canonical_email, mask_email


@pytest.mark.parametrize(
    ("typed", "canonical", "domain"),
    [
        ("ann@example.org", "ann@example.org", "example.org"),
        ("Ann@Example.ORG", "ann@example.org", "example.org"),
        ("  ann@example.org  ", "ann@example.org", "example.org"),
        ("ann+petition@example.org", "ann@example.org", "example.org"),
        ("ann+a+b@example.org", "ann@example.org", "example.org"),
        # Dots are significant outside Gmail: two different mailboxes.
        ("ann.author@example.org", "ann.author@example.org", "example.org"),
        ("annauthor@example.org", "annauthor@example.org", "example.org"),
        # Gmail ignores dots and case; googlemail.com is the same mailbox.
        ("Ann.Author@gmail.com", "annauthor@gmail.com", "gmail.com"),
        ("a.n.n.author+x@googlemail.com", "annauthor@gmail.com", "gmail.com"),
        ("ANNAUTHOR@GoogleMail.com", "annauthor@gmail.com", "gmail.com"),
        # Internationalised domains compare in their ASCII form.
        ("ann@bücher.example", "ann@xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("ann@xn--bcher-kva.example", "ann@xn--bcher-kva.example", "xn--bcher-kva.example"),
    ],
)
def test_canonical_forms(typed: str, canonical: str, domain: str) -> None:
    result = canonical_email(typed)
    assert (result.canonical, result.domain) == (canonical, domain)


def test_the_address_mail_goes_to_keeps_the_local_part_as_typed() -> None:
    result = canonical_email("Ann.Author+x@GMAIL.com")
    assert result.address == "Ann.Author+x@gmail.com"


def test_spellings_of_one_gmail_mailbox_collide_and_other_domains_do_not() -> None:
    gmail = {
        canonical_email(a).canonical
        for a in ("a.b@gmail.com", "ab@googlemail.com", "AB+1@gmail.com")
    }
    assert len(gmail) == 1
    other = {canonical_email(a).canonical for a in ("a.b@example.org", "ab@example.org")}
    assert len(other) == 2


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "   ",
        "ann",
        "ann@",
        "@example.org",
        "ann@@example.org",
        "ann@example",  # no dot in the domain: not deliverable on the Internet
        "ann example@example.org",
        "ann@exa mple.org",
        "+tag@example.org",  # nothing left before the @ once the tag is gone
        "ann\n@example.org",
        "<script>@example.org",
        "a" * 65 + "@example.org",  # local part longer than RFC 5321 allows
        "ann@" + "a" * 300 + ".org",
    ],
)
def test_invalid_addresses_are_refused_with_a_reason(bad: str) -> None:
    with pytest.raises(InvalidInputError, match=r"e-mail address"):
        canonical_email(bad)


def test_masking_keeps_the_domain_and_hides_the_mailbox() -> None:
    assert mask_email("ann.author@example.org") == "a*********@example.org"
    assert mask_email("a@example.org") == "a***@example.org"
    assert "author" not in mask_email("ann.author@example.org")
    assert mask_email("garbage") == "***"
