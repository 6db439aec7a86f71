"""``consentry statement|operator|mail`` end to end, in-process and through the console script."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from consentry.cli import main
from consentry.config import Settings
from consentry.statements import DevSMTPServer, OperatorService, StatementService, StatementSpec
from consentry.statements.devsmtp import read_maildir
from consentry.store.database import Database
from statements_support import SECRET, request, server_settings

CONSOLE = Path(sys.executable).parent / "consentry"


class Cli:
    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def run(self, *argv: str | Path) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main([str(a) for a in argv])
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err

    def json(self, *argv: str | Path) -> list[dict[str, Any]]:
        code, out, err = self.run(*argv, "--json")
        assert code == 0, f"consentry {' '.join(map(str, argv))}: {err}"
        return [json.loads(line) for line in out.splitlines()]

    def one(self, *argv: str | Path) -> dict[str, Any]:
        (obj,) = self.json(*argv)
        return obj

    def human(self, *argv: str | Path) -> str:
        code, out, err = self.run(*argv)
        assert code == 0, err
        assert out.strip()
        return out

    def error(self, *argv: str | Path) -> str:
        code, out, err = self.run(*argv)
        assert (code, out) == (1, ""), (code, out, err)
        assert err.startswith("error: ")
        assert len(err.splitlines()) == 1
        return err


@pytest.fixture
def cli(
    capsys: pytest.CaptureFixture[str],
    cli_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> Cli:
    monkeypatch.setenv("CONSENTRY_SECRET_KEY", SECRET)
    runner = Cli(capsys)
    assert runner.one("init")["schema"]
    return runner


@pytest.fixture
def databases() -> Iterator[list[Database]]:
    """Databases a test opens beside the CLI; closed at the end (no connection left open)."""
    opened: list[Database] = []
    yield opened
    for db in opened:
        db.close()


def _service(
    databases: list[Database], cli_env: dict[str, str], smtp_url: str = "smtp://127.0.0.1:8025"
) -> StatementService:
    registry = Settings.load(env=cli_env)
    databases.append(Database(registry))
    return StatementService(databases[-1], server_settings(registry, CONSENTRY_SMTP_URL=smtp_url))


def test_a_statement_from_creation_to_export(
    cli: Cli,
    databases: list[Database],
    cli_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = tmp_path / "statement.txt"
    text.write_text("We do not consent to training on our work.\n", encoding="utf-8")
    created = cli.one(
        "statement", "create", "--slug", "no-consent", "--title", "No consent",
        "--text-file", text, "--language", "en", "--language", "fr", "--goal", "10000",
        "--require", "occupation", "--rate", "ip_burst=2/60", "--by", "orla",
    )  # fmt: skip
    assert (created["state"], created["languages"], created["goal"]) == (
        "draft",
        ["en", "fr"],
        10000,
    )
    assert created["rate_limits"]["ip_burst"] == "2/60"
    assert created["text"].startswith("We do not consent")
    assert cli.json("statement", "list", "--public") == []
    assert "no-consent\tdraft\t0/10000\tNo consent" in cli.human("statement", "list")
    edited = cli.one("statement", "edit", "no-consent", "--title", "No consent!", "--clear", "goal")
    assert (edited["title"], edited["goal"]) == ("No consent!", None)
    assert cli.one("statement", "open", "no-consent")["state"] == "open"
    assert "people signed" in cli.error("statement", "edit", "no-consent", "--text", "changed")

    with DevSMTPServer(maildir=tmp_path / "mail") as smtp:
        monkeypatch.setenv("CONSENTRY_SMTP_URL", smtp.url)
        service = _service(databases, cli_env, smtp.url)
        results = service.sign_many(
            [
                request("no-consent", email="ann@example.org", occupation="novelist"),
                request(
                    "no-consent", email="=cmd@example.org", name="=HYPERLINK(1)", occupation="x"
                ),
                request("no-consent", email="bot@example.org", occupation="x", honeypot="y"),
            ]
        )
        assert [r.outcome.value for r in results] == ["accepted", "accepted", "suppressed"]
        sent = cli.one("mail", "worker", "--once", "--dev")
        assert sent["sent"] == 2
        assert sent["outbox"] == {"sent": 2}
        messages = {m["To"]: m.get_content() for m in smtp.messages()}
        assert set(messages) == {"ann@example.org", "=cmd@example.org"}
    assert cli.one("mail", "status") == {"sent": 2}

    pending = cli.json("statement", "signatures", "no-consent", "--state", "pending")
    assert sorted(s["email"] for s in pending) == ["=cmd@example.org", "ann@example.org"]
    fraud = cli.one("statement", "signatures", "no-consent", "--state", "fraudulent")
    assert fraud["fraud_reason"] == "honeypot"

    # Confirm one through its link (what the web page's button does), then fold the counts.
    link = re.search(r"/confirm/([A-Za-z0-9_-]{43})", messages["ann@example.org"])
    assert link is not None
    service.confirm(link.group(1))
    assert cli.one("statement", "refresh-counts") == {"folded": 1}
    assert cli.one("statement", "show", "no-consent")["signature_count"] == 1
    ann = next(
        s
        for s in cli.json("statement", "signatures", "no-consent")
        if s["email"] == "ann@example.org"
    )
    vetted = cli.one(
        "statement", "vet", str(ann["id"]), "--as", "notable", "--method", "called their agent",
        "--by", "vera",
    )  # fmt: skip
    assert (vetted["kind"], vetted["vetted_by"], vetted["vet_method"]) == (
        "notable",
        "vera",
        "called their agent",
    )
    assert cli.one("statement", "unvet", str(ann["id"]))["kind"] == "person"

    dry = cli.one(
        "statement",
        "invalidate",
        "no-consent",
        "--domain",
        "example.org",
        "--state",
        "pending",
        "--dry-run",
    )
    assert dry == {"statement": "no-consent", "dry_run": True, "count": 1}
    real = cli.one(
        "statement", "invalidate", "no-consent", "--domain", "example.org", "--state", "pending"
    )
    assert real["count"] == 1
    assert "at least one condition" in cli.error("statement", "invalidate", "no-consent")

    out = tmp_path / "export.csv"
    assert cli.one("statement", "export-csv", "no-consent", "-o", out)["rows"] == 3
    with out.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["name"] for r in rows} == {"Ann Author", "'=HYPERLINK(1)"}
    assert {r["email"] for r in rows} >= {"'=cmd@example.org"}

    assert cli.one("statement", "recount", "no-consent")["drift"] == 0
    assert cli.one("statement", "erase", "ann@example.org") == {"erased": 1}
    assert cli.one("statement", "close", "no-consent")["state"] == "closed"
    assert cli.one("statement", "anonymise") == {"anonymised": 0}  # 90 days not passed yet

    trail = cli.json("statement", "audit", "no-consent")
    names = [a["action"] for a in trail]
    assert names[0] == "statement.close"
    assert names[-1] == "statement.create"
    assert {"signature.vet", "signature.unvet", "signatures.invalidate"} <= set(names)
    assert trail[-1]["operator"] == "orla"
    assert all(a["operator"].startswith("cli") for a in trail if a["action"] == "statement.open")


def test_blocklist_commands(cli: Cli) -> None:
    blocked = cli.json("statement", "block", "ip", "203.0.113.7/24", "--note", "botnet")
    assert blocked == [
        {
            "kind": "ip",
            "value": "203.0.113.0/24",
            "note": "botnet",
            "created_by": blocked[0]["created_by"],
        }
    ]
    cli.json("statement", "block", "domain", "Spam.Example")
    assert [b["value"] for b in cli.json("statement", "blocklist")] == [
        "spam.example",
        "203.0.113.0/24",
    ]
    assert (
        cli.json("statement", "unblock", "domain", "spam.example")[0]["value"] == "203.0.113.0/24"
    )
    assert "not blocked" in cli.error("statement", "unblock", "domain", "spam.example")
    assert "CIDR" in cli.error("statement", "block", "ip", "not-an-ip")
    assert "empty" in cli.run("statement", "unblock", "ip", "203.0.113.0/24")[2]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("statement", "show", "nope"), "no statement 'nope'"),
        (("statement", "create", "--slug", "x1", "--title", "T"), "--text"),
        (
            (
                "statement",
                "create",
                "--slug",
                "x1",
                "--title",
                "T",
                "--text",
                "a",
                "--text-file",
                "f",
            ),
            "not both",
        ),
        (
            ("statement", "create", "--slug", "x1", "--title", "T", "--text-file", "/nonexistent"),
            "cannot read",
        ),
        (
            (
                "statement",
                "create",
                "--slug",
                "x1",
                "--title",
                "T",
                "--text",
                "a",
                "--rate",
                "ip_burst",
            ),
            "NAME=N/S",
        ),
        (
            (
                "statement",
                "create",
                "--slug",
                "x1",
                "--title",
                "T",
                "--text",
                "a",
                "--rate",
                "ipburst=5/60",
            ),
            "unknown rate limit",
        ),
        (
            (
                "statement",
                "create",
                "--slug",
                "x1",
                "--title",
                "T",
                "--text",
                "a",
                "--require",
                "age",
            ),
            "unknown field",
        ),
        (
            (
                "statement",
                "create",
                "--slug",
                "x1",
                "--title",
                "T",
                "--text",
                "a",
                "--closes",
                "soon",
            ),
            "soon",
        ),
        (("statement", "create", "--slug", "X 1", "--title", "T", "--text", "a"), "slug"),
        (("statement", "vet", "12", "--as", "notable", "--method", "m"), "no signature 12"),
        (("statement", "erase", "x@example.org", "--by", "b" * 101), "by"),
        (("operator", "passwd", "nobody"), "no operator"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(cli: Cli, argv: tuple[str, ...], message: str) -> None:
    assert message in cli.error(*argv)


def test_operator_accounts(
    databases: list[Database],
    cli: Cli,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cli_env: dict[str, str],
) -> None:
    secret = tmp_path / "password"
    secret.write_text("a long enough passphrase\n", encoding="utf-8")
    orla = cli.one(
        "operator",
        "add",
        "orla",
        "--role",
        "operator",
        "--role",
        "vetter",
        "--password-file",
        secret,
    )
    assert (orla["username"], orla["roles"]) == ("orla", ["operator", "vetter"])
    monkeypatch.setenv("CONSENTRY_OPERATOR_PASSWORD", "another long passphrase")
    cli.one("operator", "add", "vera", "--role", "vetter")
    assert [o["username"] for o in cli.json("operator", "list")] == ["orla", "vera"]
    assert "exists already" in cli.error("operator", "add", "orla", "--role", "operator")
    assert "cannot read" in cli.error(
        "operator", "add", "ted", "--role", "operator", "--password-file", tmp_path / "short"
    )
    (tmp_path / "short").write_text("short", encoding="utf-8")
    assert "at least 12" in cli.error(
        "operator", "add", "ted", "--role", "operator", "--password-file", tmp_path / "short"
    )
    assert cli.one("operator", "passwd", "orla")["password_changed"] is True
    databases.append(Database(Settings.load(env=cli_env)))
    operators = OperatorService(databases[-1])
    assert operators.authenticate("orla", "another long passphrase") is not None
    assert operators.authenticate("orla", "a long enough passphrase") is None
    assert "is not one of" in cli.error("operator", "add", "eve", "--role", "admin")


def _console(env: dict[str, str], *argv: str) -> subprocess.Popen[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CONSENTRY_")}
    return subprocess.Popen(
        [str(CONSOLE), *argv],
        env=base | env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_dev_server_and_worker_run_until_sigterm(
    databases: list[Database], cli: Cli, cli_env: dict[str, str], tmp_path: Path
) -> None:
    maildir = tmp_path / "sink"
    sink = _console(
        cli_env, "mail", "dev-server", "--port", "0", "--maildir", str(maildir), "--json"
    )
    try:
        assert sink.stdout is not None
        started = json.loads(sink.stdout.readline())
        assert started["maildir"] == str(maildir)
        url = started["url"]
        service = _service(databases, cli_env, url)
        service.create_statement(StatementSpec(slug="live", title="Live", text="x"), by="orla")
        service.open_statement("live", by="orla")
        worker_env = cli_env | {"CONSENTRY_SMTP_URL": url, "CONSENTRY_SECRET_KEY": SECRET}
        worker = _console(worker_env, "mail", "worker", "--dev", "--interval", "0.1", "--json")
        try:
            service.sign(request("live", email="sigterm@example.org"))
            for _ in range(300):
                if read_maildir(maildir):
                    break
                time.sleep(0.1)
            assert [m["To"] for m in read_maildir(maildir)] == ["sigterm@example.org"]
        finally:
            worker.send_signal(signal.SIGTERM)
            out, err = worker.communicate(timeout=30)
        assert worker.returncode == 0, err
        assert json.loads(out.splitlines()[-1])["stopped"] is True
    finally:
        sink.send_signal(signal.SIGTERM)
        sink.communicate(timeout=30)
    assert sink.returncode == 0
