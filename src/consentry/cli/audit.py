"""``consentry audit`` (certify a gate run from its manifest) and ``consentry key generate``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from consentry.cli.output import Out, json_option
from consentry.config import Settings
from consentry.errors import InvalidInputError, VerificationError
from consentry.gate.audit import (
    AuditReport,
    audit_manifest,
    read_registry_state,
    render_audit_html,
)
from consentry.gate.logbundle import write_private
from consentry.ledger.note import generate_signer

__all__ = ["audit", "key"]


@click.command()
@click.argument("manifest", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--operator-key",
    "operator_key",
    envvar="CONSENTRY_OPERATOR_KEY",
    show_envvar=True,
    required=True,
    help="Registry operator's public key, or a file holding it.",
)
@click.option(
    "--runner-key",
    "runner_key",
    default=None,
    help="Public key of whoever ran the gate (else the key the manifest names: not pinned).",
)
@click.option(
    "--decisions",
    "decisions",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Decisions table (default: the one beside the manifest).",
)
@click.option(
    "--log",
    "log_home",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Registry home to check consistency and backdating against (read only).",
)
@click.option(
    "--checkpoint",
    "checkpoint_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="A newer signed checkpoint of the log (without --log).",
)
@click.option(
    "--html",
    "html_out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write the HTML certification report here.",
)
@json_option
def audit(
    manifest: Path,
    operator_key: str,
    runner_key: str | None,
    decisions: Path | None,
    log_home: Path | None,
    checkpoint_file: Path | None,
    html_out: Path | None,
    as_json: bool,
) -> None:
    """Audit a gate run: signatures, decisions, grants in force, log consistency.

    Runs the numbered checks of docs/ledger.md ("Auditing a gate run") and prints every
    problem found. Exit 0 only when certified; 1 otherwise, and on bad input.
    """
    if log_home is not None and checkpoint_file is not None:
        raise InvalidInputError("give --log HOME or --checkpoint FILE, not both")
    newer: str | None = None
    if checkpoint_file is not None:
        try:
            newer = checkpoint_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInputError(f"--checkpoint {checkpoint_file}: unreadable ({exc})") from None
    registry = None
    if log_home is not None:
        size = _manifest_checkpoint_size(manifest)
        registry = read_registry_state(Settings.load(home=log_home), size)
    report = audit_manifest(
        manifest,
        operator_key=operator_key,
        runner_key=runner_key,
        decisions=decisions,
        registry=registry,
        newer_checkpoint=newer,
    )
    if html_out is not None:
        html_out.write_text(render_audit_html(report), encoding="utf-8")
    obj = report.to_json() | {"html": str(html_out) if html_out is not None else None}
    Out(as_json).emit(obj, lambda: _human(report, html_out))
    if not report.certified:
        problems = report.problems
        if problems:
            why = f"{len(problems)} problem(s); the first: {problems[0]}"
        else:
            skipped = [f"step {s.number} ({s.name})" for s in report.steps if s.status == "skipped"]
            why = f"{', '.join(skipped)} skipped"
        raise VerificationError(f"{report.verdict}: {why}")


def _manifest_checkpoint_size(manifest: Path) -> int:
    try:
        size = json.loads(manifest.read_bytes())["log"]["checkpoint_size"]
    except (OSError, ValueError, KeyError, TypeError):
        return 0  # the audit itself reports the malformed manifest
    return size if isinstance(size, int) and not isinstance(size, bool) else 0


def _human(report: AuditReport, html_out: Path | None) -> str:
    lines = [f"verdict: {report.verdict}  ({report.manifest_path})"]
    for step in report.steps:
        lines.append(f"  {step.number}. {step.name:<20} {step.status}")
        lines += [f"       problem: {p}" for p in step.problems]
        lines += [f"       {n}" for n in step.notes]
    shares = [b for b in report.basis_fractions() if b["items"]]
    lines.append(f"  {report.items} items, {report.admitted} admitted")
    lines += [f"    {b['items']:>8}  {b['basis']} ({b['of_admitted']:.1%})" for b in shares]
    if html_out is not None:
        lines.append(f"  report {html_out}")
    return "\n".join(lines)


@click.group()
def key() -> None:
    """Signing keys for gate runners (C2SP signed-note Ed25519 keys)."""


@key.command("generate")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="New private key file (mode 0600); the public key goes to OUT.pub.",
)
@click.option(
    "--name",
    default="consentry-gate-runner",
    show_default=True,
    help="Key name shown in signatures (no spaces or '+').",
)
@json_option
def key_generate(out: Path, name: str, as_json: bool) -> None:
    """Generate a signing key for `consentry gate --sign-key`; print its public key."""
    skey, vkey = generate_signer(name)
    pub = out.with_name(out.name + ".pub")
    if pub.exists():
        raise InvalidInputError(f"{pub} already exists; keys are never overwritten")
    write_private(out, skey + "\n")
    pub.write_text(vkey + "\n", encoding="utf-8")
    Out(as_json).emit({"vkey": vkey, "key": str(out), "pub": str(pub)}, vkey)
