"""``consentry serve`` as a user runs it: refusals with one clear line, and a real server
process (one and two uvicorn workers) that signs, sends the e-mail and stops on Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

import pytest

from consentry.cli import main
from consentry.config import ServerSettings, Settings
from consentry.statements import DevSMTPServer
from consentry.store.database import Database
from process_support import HAVE_PROC, live_descendants, still_running
from web_support import prepare_registry, server_settings

CONSENTRY = str(Path(sys.executable).with_name("consentry"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("CONSENTRY_"):
            monkeypatch.delenv(name)
    path = tmp_path / "home"
    monkeypatch.setenv("CONSENTRY_HOME", str(path))
    return path


def test_serve_refuses_insecure_settings_outside_dev(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init"]) == 0
    capsys.readouterr()
    assert main(["serve", "--port", str(free_port())]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    for name in ("CONSENTRY_SECRET_KEY", "CONSENTRY_SMTP_URL", "CONSENTRY_MAIL_FROM"):
        assert name in err


def test_serve_refuses_dev_mode_on_a_network_address(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init"]) == 0
    capsys.readouterr()
    assert main(["serve", "--dev", "--host", "0.0.0.0"]) == 1  # noqa: S104 - refused
    err = capsys.readouterr().err
    assert "loopback only" in err


def test_serve_refuses_a_missing_registry(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--dev", "--port", str(free_port())]) == 1
    assert "consentry init" in capsys.readouterr().err


def _wait_up(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        assert time.monotonic() < deadline, "the server did not come up"
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_a_real_server_signs_mails_and_stops_cleanly(tmp_path: Path, workers: int) -> None:
    port, smtp_port = free_port(), free_port()
    registry = Settings.load(env={"CONSENTRY_HOME": str(tmp_path / "home")})
    settings: ServerSettings = server_settings(registry, smtp_port)
    prepare_registry(settings)
    with Database(registry) as db:
        db.migrate()
    env = {key: value for key, value in os.environ.items() if not key.startswith("CONSENTRY_")} | {
        "CONSENTRY_HOME": str(registry.home),
        "CONSENTRY_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
        "CONSENTRY_BASE_URL": f"http://127.0.0.1:{port}",
        "CONSENTRY_MIN_FILL_SECONDS": "0.2",
        "CONSENTRY_COUNT_INTERVAL": "0.5",
    }
    command = [
        CONSENTRY,
        "serve",
        "--dev",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--json",
    ]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_up(f"{base}/healthz", process)
        assert process.stdout is not None
        info = json.loads(process.stdout.readline())
        assert info["url"] == base
        assert info["workers"] == workers

        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
        with opener.open(f"{base}/statements/letter") as response:
            page = response.read().decode()
        token = re.search(r'name="form_token" value="([^"]+)"', page)
        assert token
        time.sleep(0.3)
        form = urllib.parse.urlencode(
            {"form_token": token.group(1), "name": "Worker Test", "email": "w@example.org"}
        ).encode()
        with opener.open(f"{base}/statements/letter/sign", data=form) as response:
            assert "check your e-mail" in response.read().decode()

        # The dev SMTP server runs once, and the outbox worker (a child process) sends to it.
        maildir = registry.home / "dev-mail"
        deadline = time.monotonic() + 30
        while not (maildir / "new").is_dir() or not any((maildir / "new").iterdir()):
            assert time.monotonic() < deadline, "no e-mail reached the dev mailbox"
            time.sleep(0.2)
        mail = next((maildir / "new").iterdir()).read_text()
        assert f"{base}/confirm/" in mail
    finally:
        process.send_signal(signal.SIGINT)
        try:
            _, err = process.communicate(timeout=30)  # also closes the pipes
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise
    stderr = err.decode()
    assert process.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr
    # Every log line is one JSON object, and no log line carries an e-mail address.
    lines = [line for line in stderr.splitlines() if line.startswith("{")]
    assert lines
    assert all(isinstance(json.loads(line), dict) for line in lines)
    assert "w@example.org" not in stderr


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_PROC, reason="reads /proc")
@pytest.mark.parametrize(
    ("sig", "workers"),
    [(signal.SIGTERM, 1), (signal.SIGKILL, 1), (signal.SIGKILL, 2)],
    ids=["SIGTERM", "SIGKILL", "SIGKILL-2-workers"],
)
def test_nothing_the_server_started_outlives_it(
    tmp_path: Path, sig: signal.Signals, workers: int
) -> None:
    """``kill`` / ``docker stop`` (SIGTERM) and ``kill -9`` of ``consentry serve``: the e-mail
    sender and the uvicorn workers it started must not outlive it (an orphaned sender sends
    beside the next server; an orphaned worker keeps serving and holds the port). SIGTERM
    stops them as Ctrl-C does, and the server still dies by the signal; after SIGKILL they
    notice that their parent is gone."""
    port, smtp_port = free_port(), free_port()
    registry = Settings.load(env={"CONSENTRY_HOME": str(tmp_path / "home")})
    prepare_registry(server_settings(registry, smtp_port))
    with Database(registry) as db:
        db.migrate()
    env = {key: value for key, value in os.environ.items() if not key.startswith("CONSENTRY_")} | {
        "CONSENTRY_HOME": str(registry.home),
        "CONSENTRY_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
        "CONSENTRY_BASE_URL": f"http://127.0.0.1:{port}",
    }
    command = [CONSENTRY, "serve", "--dev", "--port", str(port), "--workers", str(workers)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_up(f"http://127.0.0.1:{port}/healthz", process)
        started = live_descendants(process.pid)
        # The outbox child and its resource tracker, and with 2 workers two uvicorn workers.
        assert len(started) >= (2 if workers == 1 else 4), started
        process.send_signal(sig)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == -sig
    if sig == signal.SIGTERM:
        assert b"Traceback" not in err
    deadline = time.monotonic() + 20
    while left := still_running(started):
        assert time.monotonic() < deadline, f"still running after {sig.name}: {left}"
        time.sleep(0.1)


def test_dev_smtp_fixture_is_real(tmp_path: Path) -> None:
    # The dev SMTP server the --dev mode starts is a real SMTP server (used above via serve).
    import smtplib

    with DevSMTPServer(host="127.0.0.1", port=0, maildir=tmp_path / "m") as server:
        with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
            client.sendmail("a@example.org", ["b@example.org"], b"Subject: hi\r\n\r\nbody")
        assert [m["Subject"] for m in server.messages()] == ["hi"]
