"""The progress display: drawn on a terminal, and free (rich not even imported) elsewhere."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

_RUN = """
import sys, time
from consentry.cli.progress import progress
with progress("deciding", total=3) as ticker:
    ticker.advance(1)
    time.sleep(0.3)  # a few frames, so the rate is drawn from real samples too
    ticker.advance(2)
with progress("reading") as ticker:  # no total: a count instead of a bar
    ticker.advance(5)
print("rich" in sys.modules, file=sys.stdout)
"""


def test_no_terminal_draws_nothing_and_does_not_import_rich() -> None:
    done = subprocess.run([sys.executable, "-c", _RUN], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
    assert done.stderr == ""


def test_a_terminal_gets_the_bar_with_counts() -> None:
    master, slave = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-c", _RUN],
            stdout=subprocess.PIPE,
            stderr=slave,
            text=True,
            check=True,
            env={**os.environ, "TERM": "xterm", "COLUMNS": "100"},
        )
        os.close(slave)
        slave = -1
        drawn = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other end is closed and drained
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        if slave != -1:
            os.close(slave)
        os.close(master)
    assert done.stdout.strip() == "True"
    text = drawn.decode("utf-8", "replace")
    assert "deciding" in text
    assert "3/3" in text
    assert "/s" in text  # the rate column
    assert "reading" in text
    assert "Traceback" not in text
