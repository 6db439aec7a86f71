"""``consentry snapshot …`` and ``consentry gate``: the offline side, for AI developers."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

import consentry.gate.blas  # noqa: F401 - before numpy loads: one BLAS thread per process
from consentry.cli.context import AppContext, pass_app
from consentry.cli.options import PURPOSE_CHOICE
from consentry.cli.output import Out, json_option
from consentry.cli.progress import progress
from consentry.errors import InvalidInputError
from consentry.gate.logbundle import load_signer_file
from consentry.gate.policy import load_policy, policy_from_mapping
from consentry.gate.pool import start_workers_early
from consentry.gate.sources import DEFAULT_CHUNK_SIZE, ColumnMap, open_source
from consentry.ledger.keys import load_operator_signer

__all__ = ["gate", "operator_key_options", "snapshot"]

F = TypeVar("F", bound=Callable[..., Any])


def operator_key_options(func: F) -> F:
    """``--operator-key`` and ``--trust-snapshot-key``: how a snapshot's signer is pinned."""
    func = click.option(
        "--trust-snapshot-key",
        is_flag=True,
        help="Accept the key the snapshot names when none is pinned (recorded as unpinned).",
    )(func)
    return click.option(
        "--operator-key",
        "operator_key",
        envvar="CONSENTRY_OPERATOR_KEY",
        show_envvar=True,
        default=None,
        help="Registry operator's public key, or a file holding it (keys/operator.pub).",
    )(func)


@click.group()
def snapshot() -> None:
    """Export and inspect registry snapshots (what the offline gate decides against)."""


@snapshot.command("export")
@click.option(
    "--out", "out", required=True, type=click.Path(path_type=Path), help="New snapshot dir."
)
@json_option
@pass_app
def snapshot_export(app: AppContext, out: Path, as_json: bool) -> None:
    """Write a self-contained, content-addressed, signed snapshot of the registry.

    Holds grants, holders, reservations, disputes, fingerprints, match indexes and the log
    events with proofs against a fresh checkpoint; no e-mail addresses (parties appear by id
    and display name only). Signed with the operator key of the home.
    """
    from consentry.gate.snapshot import export_snapshot

    db = app.database()
    signer = load_operator_signer(db.settings.home)
    # One write transaction: the log cannot grow between the checkpoint and the export.
    with db.write() as session:
        info = export_snapshot(session, db.settings.home, out, signer=signer)
    counts = info.manifest["counts"]
    obj = {"path": str(info.path), "id": info.id, "counts": counts}
    human = f"snapshot {info.id}\n  at {info.path}\n  " + ", ".join(
        f"{n} {k}" for k, n in counts.items()
    )
    Out(as_json).emit(obj, human)


@snapshot.command("info")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--no-verify", is_flag=True, help="Skip every check but the manifest's id.")
@operator_key_options
@json_option
def snapshot_info(
    path: Path,
    no_verify: bool,
    operator_key: str | None,
    trust_snapshot_key: bool,
    as_json: bool,
) -> None:
    """Show a snapshot's id, counts and files; verifies signature, hashes and log proofs."""
    from consentry.gate.snapshot import read_manifest, verify_snapshot

    if no_verify:
        manifest = read_manifest(path)
        pinned = False
    else:
        manifest, log = verify_snapshot(path, operator_key, trust_snapshot_key=trust_snapshot_key)
        pinned = log.key_pinned
    log_meta = manifest.get("log", {})
    obj = {
        "path": str(path),
        "id": manifest["id"],
        "version": manifest["version"],
        "created_at": manifest["created_at"],
        "tool": manifest["tool"],
        "counts": manifest["counts"],
        "indexes": manifest.get("indexes", []),
        "log": log_meta,
        "verified": not no_verify,
        "operator_key_pinned": pinned,
    }
    if no_verify:
        checked = "  signature, content hashes and log proofs not checked"
    else:
        checked = "  signature, content hashes and log proofs verified" + (
            "" if pinned else " (against the key the snapshot names: NOT pinned)"
        )
    lines = [
        f"snapshot {manifest['id']}",
        f"  created {manifest['created_at']} by {manifest['tool']}",
        "  " + ", ".join(f"{n} {k}" for k, n in manifest["counts"].items()),
        f"  log {log_meta.get('origin')} at size {log_meta.get('checkpoint_size')}",
        checked,
    ]
    Out(as_json).emit(obj, "\n".join(lines))


@click.command()
@click.argument("source", type=click.Path(path_type=Path))
@click.option(
    "--snapshot",
    "snapshot_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Registry snapshot to decide against.",
)
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(path_type=Path),
    default=None,
    help="Policy TOML (see docs/gate.md); or give --licensee and --purpose.",
)
@click.option("--licensee", default=None, help="Licensee party id (policy: grants only).")
@click.option("--purpose", default=None, type=PURPOSE_CHOICE, help="Purpose (with --licensee).")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(path_type=Path),
    help="Output directory (new or empty, or an interrupted run's with --resume).",
)
@click.option(
    "--workers", default=1, show_default=True, type=click.IntRange(1, 256), help="Worker processes."
)
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --out.")
@click.option(
    "--format",
    "fmt",
    default=None,
    type=click.Choice(["files", "jsonl", "csv", "parquet", "webdataset", "hf"]),
    help="Input format (default: detected).",
)
@click.option("--key-column", default=None, help="Column holding the item key.")
@click.option("--text-column", default=None, help="Column holding text.")
@click.option("--image-column", default=None, help="Column holding image bytes or paths.")
@click.option(
    "--meta-column",
    "meta_columns",
    multiple=True,
    help="Column copied into item metadata (repeatable; default: all others).",
)
@click.option(
    "--chunk-size",
    default=DEFAULT_CHUNK_SIZE,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Items per resumable chunk.",
)
@operator_key_options
@click.option(
    "--sign-key",
    "sign_key",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Your signer key file (consentry key generate): signs the manifest (manifest.sig).",
)
@json_option
def gate(
    source: Path,
    snapshot_path: Path,
    policy_file: Path | None,
    licensee: str | None,
    purpose: str | None,
    out: Path,
    workers: int,
    resume: bool,
    fmt: str | None,
    key_column: str | None,
    text_column: str | None,
    image_column: str | None,
    meta_columns: tuple[str, ...],
    chunk_size: int,
    operator_key: str | None,
    trust_snapshot_key: bool,
    sign_key: Path | None,
    as_json: bool,
) -> None:
    """Run a dataset through the registry offline: admitted subset, decisions, report.

    Denied items are answers, not failures: exit 0 whatever is decided. Snapshot or policy
    problems (a signature that does not verify with --operator-key included) stop the run
    before it starts; unreadable items are denied as `unreadable`.
    """
    if workers > 1:
        # The forkserver imports the gate on the other core while this process does (below).
        start_workers_early(main_imports=["consentry.cli"])
    # Imported here, not with this module: only now do the workers' imports overlap them.
    from consentry.gate.run import run_gate

    signer = load_signer_file(sign_key) if sign_key is not None else None
    if policy_file is not None:
        if licensee or purpose:
            raise InvalidInputError("give --policy, or --licensee and --purpose, not both")
        policy = load_policy(policy_file)
    elif licensee and purpose:
        policy = policy_from_mapping({"licensee": licensee, "purpose": purpose})
    else:
        raise InvalidInputError("give --policy FILE, or --licensee ID and --purpose P")
    if not source.exists():
        raise InvalidInputError(f"{source}: no such file or directory")
    columns = None
    if any((key_column, text_column, image_column, meta_columns)):
        columns = ColumnMap(
            key=key_column,
            text=text_column,
            image=image_column,
            metadata=tuple(meta_columns) or None,  # None: every non-content column
        )
    src = open_source(source, columns=columns, format=fmt)
    # The total is for the progress bar, which is only drawn on a terminal; counting walks a
    # folder of files (or reads every Parquet footer) before the first decision.
    total = src.count() if sys.stderr.isatty() else None
    with progress("gating", total=total) as bar:
        result = run_gate(
            src,
            snapshot_path,
            policy,
            out,
            workers=workers,
            resume=resume,
            chunk_size=chunk_size,
            on_progress=bar.advance,
            operator_key=operator_key,
            trust_snapshot_key=trust_snapshot_key,
            sign_key=signer,
        )
    counts = result.counts
    obj = {
        "out": str(out),
        "manifest": str(out / "manifest.json"),
        "report": str(out / "report.html"),
        "snapshot_id": result.manifest["snapshot"]["id"],
        "merkle_root": result.manifest["decisions"]["merkle_root"],
        "signed": signer is not None,
        **counts,
    }
    lines = [f"{counts['items']} items: {counts['admit']} admitted, {counts['deny']} denied"]
    lines += [f"  {n:>8}  {reason}" for reason, n in counts["by_reason"].items()]
    lines += [f"  report   {out / 'report.html'}", f"  manifest {out / 'manifest.json'}"]
    if signer is None:
        lines.append("  manifest not signed (give --sign-key to sign it)")
    Out(as_json).emit(obj, "\n".join(lines))
