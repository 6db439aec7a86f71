"""The texts of the e-mails a signer receives (plain text; no tracking, no remote images).

Every message carries the withdraw link: a signer can always take their name back from the
e-mail in hand. Confirmation links lead to a page with a button; only pressing it (a POST)
confirms, so mail scanners that follow links confirm nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.charset import QP, Charset
from email.header import Header
from email.message import EmailMessage, Message
from email.utils import format_datetime, formataddr, make_msgid, parseaddr
from typing import Literal

__all__ = ["MESSAGE_KINDS", "MessageKind", "MessageParts", "build_message", "render"]

MessageKind = Literal["confirm", "already_signed", "confirmed"]
MESSAGE_KINDS: tuple[MessageKind, ...] = ("confirm", "already_signed", "confirmed")


@dataclass(frozen=True, slots=True)
class MessageParts:
    kind: MessageKind
    to: str
    name: str
    title: str
    statement_url: str
    withdraw_url: str
    confirm_url: str | None = None  # confirm, and already_signed while still pending
    ordinal: int | None = None  # confirmed, and already_signed once validated
    confirm_hours: int = 48


def _withdraw_paragraph(parts: MessageParts) -> str:
    return (
        "If you did not sign, or want to take your signature back, open this link and press "
        f"the button (your name is then removed from the statement):\n{parts.withdraw_url}\n"
    )


def render(parts: MessageParts) -> tuple[str, str]:
    """(subject, body) of one message."""
    greeting = f"Hello {parts.name},\n\n" if parts.name else "Hello,\n\n"
    footer = (
        f"\nThe statement: {parts.statement_url}\n\n"
        "You receive this e-mail because this address was entered on the statement's "
        "signing form. We send nothing else.\n"
    )
    if parts.kind == "confirm":
        subject = f"Please confirm your signature: {parts.title}"
        body = (
            f"{greeting}thank you for signing \u201c{parts.title}\u201d.\n\n"
            "Your signature counts once you confirm this e-mail address. Open this link and "
            f"press the button on the page (the link works for {parts.confirm_hours} hours, "
            f"once):\n{parts.confirm_url}\n\n{_withdraw_paragraph(parts)}"
        )
    elif parts.kind == "already_signed":
        subject = f"You have already signed: {parts.title}"
        if parts.confirm_url:
            status = (
                "Your signature is not confirmed yet. To confirm it, open this link and press "
                f"the button (it works for {parts.confirm_hours} hours, once):\n"
                f"{parts.confirm_url}\n"
            )
        else:
            number = f" as signer number {parts.ordinal}" if parts.ordinal else ""
            status = f"Your signature is confirmed{number}; nothing else is needed.\n"
        body = (
            f"{greeting}someone (probably you) tried to sign \u201c{parts.title}\u201d again "
            "with this e-mail address. Each address can sign once, so nothing has changed.\n\n"
            f"{status}\n{_withdraw_paragraph(parts)}"
        )
    else:
        subject = f"Thank you for signing: {parts.title}"
        number = f" as signer number {parts.ordinal}" if parts.ordinal else ""
        body = (
            f"{greeting}your signature of \u201c{parts.title}\u201d is confirmed{number}. "
            "Thank you.\n\n" + _withdraw_paragraph(parts)
        )
    return subject, body + footer


_UTF8_QP = Charset("utf-8")
_UTF8_QP.header_encoding = QP
_UTF8_QP.body_encoding = QP


def build_message(parts: MessageParts, *, mail_from: str, when: datetime) -> Message:
    """The message to send: plain text, UTF-8, quoted-printable.

    Built with the classic ``email.mime`` API, about five times cheaper than
    ``EmailMessage`` and its header registry (the mail worker builds hundreds a second);
    non-ASCII subjects and sender names are RFC 2047 encoded. A recipient address that is
    not ASCII (it needs SMTPUTF8) takes the modern API, which knows how to write it.
    """
    subject, body = render(parts)
    sender_name, sender = parseaddr(mail_from)
    domain = sender.rpartition("@")[2] or "consentry.local"
    if not parts.to.isascii():
        modern = EmailMessage()
        modern["Subject"] = subject
        modern["From"] = mail_from
        modern["To"] = parts.to
        modern["Date"] = format_datetime(when)
        modern["Message-ID"] = make_msgid(domain=domain)
        modern["Auto-Submitted"] = "auto-generated"
        modern.set_content(body)
        return modern
    message = Message()
    message.set_payload(body, _UTF8_QP)  # also sets MIME-Version and the content headers
    message["Subject"] = (
        subject
        if subject.isascii()
        # header_name: the first encoded line leaves room for "Subject: " (no empty line).
        else Header(subject, _UTF8_QP, header_name="Subject").encode()
    )
    message["From"] = formataddr((sender_name, sender), charset="utf-8")
    message["To"] = parts.to
    message["Date"] = format_datetime(when)
    message["Message-ID"] = make_msgid(domain=domain)
    # RFC 3834: an automatic message; well-behaved auto-responders do not answer it.
    message["Auto-Submitted"] = "auto-generated"
    return message
