"""``consentry ledger …``, ``consentry grant receipt`` and ``consentry receipt verify``.

The tamper-evident log (:mod:`consentry.ledger.log`): its state, signed checkpoints, a full
verification against the journal, the operator's public key, per-grant receipts and their
offline verification (which needs no registry, only the operator's public key).
"""

from __future__ import annotations

from typing import IO

import click

from consentry.cli.context import AppContext, pass_app
from consentry.cli.grants import grant
from consentry.cli.output import Out, json_option
from consentry.errors import ConfigurationError, VerificationError
from consentry.ledger.keys import load_operator_signer, parse_vkey_argument, read_operator_vkey
from consentry.ledger.log import (
    ReceiptCheckError,
    StoredCheckpoint,
    TransparencyLog,
    VerifyReport,
    verify_receipt,
)
from consentry.registry.ids import format_id
from consentry.registry.mapping import get_row
from consentry.store.tables import GrantRow

__all__ = ["grant_receipt", "ledger", "receipt"]


def _vkey(app: AppContext, log: TransparencyLog) -> str:
    vkey = read_operator_vkey(app.settings.home) or log.operator_vkey()
    if vkey is None:
        raise ConfigurationError("this registry has no operator key yet; run `consentry init`")
    return vkey


@click.group()
def ledger() -> None:
    """The tamper-evident log: status, checkpoints, verification, the operator key."""


@ledger.command("status")
@json_option
@pass_app
def ledger_status(app: AppContext, as_json: bool) -> None:
    """Show the log's size, root, latest checkpoint, origin and operator key."""
    with app.database().read() as session:
        log = TransparencyLog(session)
        size = log.size()
        root = log.root(size)
        latest = log.latest_checkpoint()
        origin = log.meta("origin")
        vkey = read_operator_vkey(app.settings.home) or log.operator_vkey()
    obj = {
        "origin": origin,
        "size": size,
        "root": root.hex(),
        "latest_checkpoint": latest.to_json() if latest is not None else None,
        "operator_vkey": vkey,
    }

    def human() -> str:
        lines = [
            f"origin      {origin or '(none: run consentry init)'}",
            f"size        {size}",
            f"root        {root.hex()}",
            f"checkpoint  {_describe(latest, size)}",
            f"operator    {vkey or '(no key: run consentry init)'}",
        ]
        return "\n".join(lines)

    Out(as_json).emit(obj, human)


def _describe(latest: StoredCheckpoint | None, size: int) -> str:
    if latest is None:
        return "none yet (consentry ledger checkpoint)"
    behind = size - latest.size
    lag = "covers every entry" if behind == 0 else f"{behind} entries since"
    return f"size {latest.size} at {latest.created_at.isoformat()} ({lag})"


@ledger.command("checkpoint")
@json_option
@pass_app
def ledger_checkpoint(app: AppContext, as_json: bool) -> None:
    """Sign and store a checkpoint of the log as it is now; print the signed note.

    Refuses to sign a tree that is not consistent with the previous checkpoint.
    """
    signer = load_operator_signer(app.settings.home)
    with app.database().write() as session:
        log = TransparencyLog(session)
        before = log.latest_checkpoint()
        note = log.checkpoint(signer)
        latest = log.latest_checkpoint()
    assert latest is not None  # noqa: S101 - checkpoint() stored or returned a stored one
    created = before is None or before.size != latest.size
    obj = {**latest.to_json(), "new": created}
    Out(as_json).emit(obj, note.rstrip("\n"))


@ledger.command("verify")
@click.option(
    "--from-scratch",
    is_flag=True,
    help="Also rebuild the whole tree from the events and compare every stored node.",
)
@json_option
@pass_app
def ledger_verify(app: AppContext, from_scratch: bool, as_json: bool) -> None:
    """Check every leaf against the events journal and every stored checkpoint.

    Exits 1 naming the first bad log index (or checkpoint) when anything does not verify.
    """
    with app.database().read() as session:
        log = TransparencyLog(session)
        report = log.verify(from_scratch=from_scratch, vkey=read_operator_vkey(app.settings.home))
    out = Out(as_json)
    if report.ok:
        out.emit(report.to_json(), lambda: _verified(report))
        return
    if as_json:
        out.emit(report.to_json(), "")
    else:
        for problem in report.problems:
            out.note(problem)
    where = f" at log index {report.bad_index}" if report.bad_index is not None else ""
    raise VerificationError(f"the log does not verify{where}: {report.problems[0]}")


def _verified(report: VerifyReport) -> str:
    how = "rebuilt from scratch" if report.from_scratch else "leaves checked against the events"
    return (
        f"log verified: {report.entries_checked} entries ({how}), "
        f"{report.checkpoints_checked} checkpoints; size {report.size}, root {report.root.hex()}"
    )


@ledger.command("key")
@json_option
@pass_app
def ledger_key(app: AppContext, as_json: bool) -> None:
    """Print the operator's public (verifier) key, for checking receipts offline."""
    vkey = read_operator_vkey(app.settings.home)
    if vkey is None:
        with app.database().read() as session:
            vkey = _vkey(app, TransparencyLog(session))
    Out(as_json).emit({"operator_vkey": vkey}, vkey)


@click.command("receipt")
@click.argument("grant_id")
@json_option
@pass_app
def grant_receipt(app: AppContext, grant_id: str, as_json: bool) -> None:
    """Print tlog proofs that the grant's creation, agreements and revocation are logged.

    Signs a fresh checkpoint first when the latest one does not cover the grant's events.
    Verify the output anywhere with `consentry receipt verify FILE --vkey KEY`.
    """
    signer = load_operator_signer(app.settings.home)
    with app.database().write() as session:
        row = get_row(session, GrantRow, "grant", grant_id)
        gid = format_id("grant", row.id)
        log = TransparencyLog(session)
        proofs = log.receipt_proofs(gid, signer)
        vkey = _vkey(app, log)
    obj = {"grant_id": gid, "operator_vkey": vkey, "proofs": [p.to_json() for p in proofs]}

    def human() -> str:
        blocks = [
            f"# {gid} {p.event} (log index {p.index})\n{p.proof.rstrip(chr(10))}" for p in proofs
        ]
        return "\n\n".join(blocks)

    Out(as_json).emit(obj, human)


grant.add_command(grant_receipt)


@click.group()
def receipt() -> None:
    """Verify receipts offline, with only the operator's public key."""


@receipt.command("verify")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@click.option(
    "--vkey",
    required=True,
    help="The operator's verifier key, or a file holding it (`consentry ledger key`).",
)
@json_option
def receipt_verify(file: IO[str], vkey: str, as_json: bool) -> None:
    """Verify FILE (`grant receipt --json` output, or one tlog proof; - for stdin).

    Exits 1 naming the check that failed: format, checkpoint signature, checkpoint, origin,
    inclusion or event.
    """
    verifier = parse_vkey_argument(vkey)
    out = Out(as_json)
    try:
        result = verify_receipt(file.read(), verifier)
    except ReceiptCheckError as exc:
        if as_json:
            out.emit({"ok": False, "check": exc.check, "error": str(exc)}, "")
        raise
    lines = [
        f"receipt verified against {result.origin} at tree size {result.checkpoint_size}:",
        *(f"  {kind} {subject} at log index {index}" for kind, index, subject in result.events),
    ]
    out.emit(result.to_json(), "\n".join(lines))
