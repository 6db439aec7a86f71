"""A real local SMTP server for ``--dev`` and the tests: aiosmtpd, storing into a maildir.

It speaks real SMTP on loopback, so the outbox worker runs exactly the code it runs against
a production mail server; the messages land in a maildir that a test (or a developer) reads.
``port=0`` picks a free port (see :attr:`DevSMTPServer.port` once started).
"""

from __future__ import annotations

import email.policy
import mailbox
import re
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox

__all__ = ["DevSMTPServer", "read_maildir"]


class _Controller(Controller):
    """aiosmtpd's controller, able to listen on port 0 (a free port the OS picks)."""

    def _trigger_server(self) -> None:
        sockets = getattr(self.server, "sockets", None)
        if self.port == 0 and sockets:
            self.port = int(sockets[0].getsockname()[1])
        super()._trigger_server()  # type: ignore[no-untyped-call]


class DevSMTPServer:
    """``with DevSMTPServer(maildir=path) as smtp: … smtp.port … smtp.messages()``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        maildir: Path | None = None,
        *,
        handler: Any = None,
        smtputf8: bool = True,
    ) -> None:
        if maildir is None and handler is None:
            raise ValueError("DevSMTPServer needs a maildir (or a handler of its own)")
        self.host = host
        self.maildir = Path(maildir) if maildir is not None else None
        if self.maildir is not None:
            # Maildir(create=True) makes tmp/new/cur only for a directory it creates itself.
            for sub in ("tmp", "new", "cur"):
                (self.maildir / sub).mkdir(parents=True, exist_ok=True)
        self._handler = handler if handler is not None else Mailbox(self.maildir)  # type: ignore[arg-type]
        # SMTPUTF8 on: signers with internationalised addresses get their mail in --dev too.
        self._controller = _Controller(
            self._handler, hostname=host, port=port, enable_SMTPUTF8=smtputf8
        )
        self._started = False

    @property
    def port(self) -> int:
        return int(self._controller.port)

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    def start(self) -> DevSMTPServer:
        self._controller.start()
        self._started = True
        return self

    def stop(self) -> None:
        if self._started:
            self._controller.stop()
            self._started = False

    def __enter__(self) -> DevSMTPServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def messages(self) -> list[EmailMessage]:
        """Every message received so far, oldest first."""
        return read_maildir(self.maildir) if self.maildir is not None else []


def read_maildir(path: Path) -> list[EmailMessage]:
    """The messages of a maildir (as ``consentry mail dev-server`` fills it), oldest first."""
    box = mailbox.Maildir(path, create=False)
    parser = BytesParser(policy=email.policy.default)
    found: list[tuple[tuple[int, ...], EmailMessage]] = []
    for key in box.keys():
        message = parser.parsebytes(box.get_bytes(key))
        assert isinstance(message, EmailMessage)  # noqa: S101 - policy.default makes these
        found.append((_arrival(key), message))
    found.sort(key=lambda item: item[0])
    return [message for _, message in found]


def _arrival(key: str) -> tuple[int, ...]:
    """Order of a maildir key ``<seconds>.M<microseconds>P<pid>Q<counter>.<host>``."""
    match = re.match(r"(\d+)\.M(\d+)P(\d+)Q(\d+)", key)
    return tuple(int(g) for g in match.groups()) if match else (0,)
