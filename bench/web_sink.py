"""The web benchmark's SMTP sink: a real SMTP server (aiosmtpd) in a process of its own.

Run as ``python -m bench.web_sink RECIPIENTS_FILE PORT_FILE``. It speaks real SMTP on loopback
through :class:`consentry.statements.devsmtp.DevSMTPServer`, so the server's outbox worker
sends exactly as it would to a mail provider; but instead of a maildir (one file and one fsync
per message, which would tax the shared cores the server under test needs) it appends each
accepted message's envelope recipients to RECIPIENTS_FILE, one per line. The benchmark counts
delivered e-mails by recipient from that file. The chosen port is written to PORT_FILE once the
server listens; the process runs until it is terminated.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import IO, Any

from consentry.statements.devsmtp import DevSMTPServer


class RecipientLog:
    """aiosmtpd handler: accept every message, log its recipients (flushed per message)."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        # Flushed before answering 250: a message the sender saw accepted is on record.
        self._out.write("".join(f"{rcpt}\n" for rcpt in envelope.rcpt_tos))
        self._out.flush()
        return "250 Message accepted for delivery"


def main(argv: list[str]) -> int:
    recipients, port_file = Path(argv[0]), Path(argv[1])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with (
        recipients.open("a", encoding="utf-8") as out,
        DevSMTPServer(handler=RecipientLog(out)) as smtp,
    ):
        tmp = port_file.with_suffix(".tmp")
        tmp.write_text(str(smtp.port), encoding="utf-8")
        tmp.replace(port_file)  # atomic: the parent never reads half a number
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
