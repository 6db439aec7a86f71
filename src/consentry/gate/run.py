"""Running a whole dataset through the gate: chunks, a process pool, resume, outputs.

Layout of ``--out DIR`` while a run is under way::

    .gate-work/state.json        what this run is (snapshot id, policy, input identity)
    .gate-work/chunks/NNNNNNNN.parquet   decisions of items [N*C, (N+1)*C), each written
                                 atomically (temporary file, fsync, rename)

and when it has finished: ``admitted/`` (the admitted subset in the input's format),
``decisions.parquet``, ``report.html``, then ``manifest.json`` and, when the runner gave a
signing key, ``manifest.sig``: a C2SP signed note over
``consentry-gate-manifest\n<sha256 hex of manifest.json>\n``.

The manifest carries the evidence an auditor needs offline (``consentry audit``): the
snapshot's signature and checkpoint, and for every grant that admitted an item, its logged
events with inclusion proofs, plus the registration, dispute and reservation events of every
work admitted through it (copied from the snapshot's ``log.json``). A run killed at
any point (Ctrl-C, ``kill -9``, power loss) leaves whole chunk files only; ``--resume``
re-reads the source, skips the chunks already decided, and rebuilds every output from the
chunks — so the outputs are those of an uninterrupted run, byte for byte apart from the
manifest's timestamps.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import rfc8785

from consentry import __version__
from consentry.domain.bases import Policy
from consentry.errors import InvalidInputError
from consentry.filehash import sha256_file
from consentry.gate.decisions import write_chunk, write_decisions
from consentry.gate.engine import Gate
from consentry.gate.item import Item
from consentry.gate.logbundle import (
    MANIFEST_STATEMENT,
    natural_key,
    related_events,
    sign_statement,
)
from consentry.gate.policy import policy_from_mapping, policy_to_json
from consentry.gate.report import Tally, render_report
from consentry.gate.sinks import write_subset
from consentry.gate.snapshot import Snapshot, SnapshotLog
from consentry.gate.sources import Source
from consentry.ledger.note import Signer, Verifier

__all__ = ["GateRun", "OrdinalSet", "run_gate"]

MANIFEST_FORMAT = "consentry-gate-manifest"
MANIFEST_VERSION = 2
"""2: the manifest carries log evidence (``log``, ``grants``, ``works``) and may be signed."""
WORK = ".gate-work"
_PART_SIZE = 16
"""Items per task sent to a worker (chunks are split into parts for load balance)."""
_IN_FLIGHT_PARTS = 4
"""Parts in flight per worker before the reader waits (bounds memory)."""
SIGNATURE_FILE = "manifest.sig"


class OrdinalSet:
    """A growable bitmap of item ordinals: one bit per item, so 10^7 items cost 1.25 MB."""

    def __init__(self) -> None:
        self._bits = bytearray()

    def add(self, ordinal: int) -> None:
        byte = ordinal >> 3
        if byte >= len(self._bits):
            self._bits.extend(bytes(byte - len(self._bits) + 1))
        self._bits[byte] |= 1 << (ordinal & 7)

    def __contains__(self, ordinal: object) -> bool:
        if not isinstance(ordinal, int) or ordinal < 0:
            return False
        byte = ordinal >> 3
        return byte < len(self._bits) and bool(self._bits[byte] & (1 << (ordinal & 7)))


@dataclass(frozen=True, slots=True)
class GateRun:
    out: Path
    manifest: dict[str, Any]

    @property
    def counts(self) -> dict[str, Any]:
        return dict(self.manifest["counts"])


# -- worker side -------------------------------------------------------------------------------

_WORKER_GATE: Gate | None = None


def _init_worker(snapshot_path: str, policy: dict[str, Any]) -> None:
    global _WORKER_GATE  # one gate per worker process, loaded once
    # The main process verified the snapshot's hashes; workers only need to read it.
    _WORKER_GATE = Gate(Snapshot.load(snapshot_path, verify=False), policy_from_mapping(policy))


def _decide_part(
    chunk_no: int, part: int, items: list[Item]
) -> tuple[int, int, list[dict[str, Any]]]:
    assert _WORKER_GATE is not None  # noqa: S101 - set by the pool initializer
    return chunk_no, part, [d.record() for d in _WORKER_GATE.decide_batch(items)]


# -- main side ---------------------------------------------------------------------------------


def _pool_context() -> multiprocessing.context.BaseContext:
    """Worker processes that start fast and use one core each.

    Not ``fork``: the parent may hold threads (pyarrow's pools) that fork would copy mid-state.
    ``forkserver`` starts one clean server that imports the gate once and forks workers from
    it (0.1 s each instead of ~1 s of imports); ``spawn`` where it does not exist. Both start
    from a fresh interpreter that reads ``OPENBLAS_NUM_THREADS=1`` before numpy loads, so N
    workers use N cores instead of N x BLAS threads fighting over them.
    """
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["consentry.gate.run"])
        return ctx
    return multiprocessing.get_context("spawn")


def _chunks(source: Source, size: int) -> Iterator[tuple[int, list[Item]]]:
    batch: list[Item] = []
    chunk_no = 0
    for item in source:
        # The sink re-reads the source; workers need only what recognition needs.
        batch.append(dataclasses.replace(item, record=None))
        if len(batch) == size:
            yield chunk_no, batch
            chunk_no, batch = chunk_no + 1, []
    if batch:
        yield chunk_no, batch


def _state_for(
    snapshot: Snapshot, policy: Policy, source: Source, chunk_size: int
) -> dict[str, Any]:
    return {
        "snapshot_id": snapshot.id,
        "policy": policy_to_json(policy),
        "input": source.identity(),
        "chunk_size": chunk_size,
        "tool": f"consentry {__version__}",
    }


def _prepare_work_dir(out: Path, state: dict[str, Any], resume: bool) -> Path:
    work = out / WORK
    chunks = work / "chunks"
    if (out / "manifest.json").exists() and not work.exists():
        raise InvalidInputError(f"{out} already holds a finished gate run; choose another --out")
    if work.exists():
        if not resume:
            raise InvalidInputError(
                f"{out} holds an unfinished gate run; pass --resume to continue it "
                "or choose another --out"
            )
        try:
            saved = json.loads((work / "state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise InvalidInputError(f"{work}/state.json is unreadable; cannot resume") from None
        for key in ("snapshot_id", "policy", "input", "chunk_size"):
            if saved.get(key) != state.get(key):
                raise InvalidInputError(
                    f"cannot resume: the {key.replace('_', ' ')} differs from the interrupted "
                    "run's (same source, snapshot and policy are needed)"
                )
    else:
        if any(out.iterdir()) if out.exists() else False:
            raise InvalidInputError(f"{out} is not empty; choose an empty or new --out")
        chunks.mkdir(parents=True)
        tmp = work / "state.json.tmp"
        tmp.write_bytes(rfc8785.dumps(state))
        tmp.replace(work / "state.json")
    return chunks


def run_gate(
    source: Source,
    snapshot_path: Path,
    policy: Policy,
    out: Path,
    *,
    workers: int = 1,
    resume: bool = False,
    chunk_size: int = 256,
    on_progress: Callable[[int], None] | None = None,
    operator_key: str | Path | Verifier | None = None,
    trust_snapshot_key: bool = False,
    sign_key: Signer | None = None,
) -> GateRun:
    """Decide every item of ``source``; write the subset, decisions, report and manifest.

    The snapshot must verify against the pinned ``operator_key`` (see :meth:`Snapshot.load`);
    with ``sign_key`` the runner signs the manifest (``manifest.sig``).
    """
    started = datetime.now(UTC)
    # Verifies signature, content hashes and log proofs before anything runs.
    snapshot = Snapshot.load(
        snapshot_path, operator_key=operator_key, trust_snapshot_key=trust_snapshot_key
    )
    gate = Gate(snapshot, policy)
    out.mkdir(parents=True, exist_ok=True)
    state = _state_for(snapshot, policy, source, chunk_size)
    if resume and (out / WORK / "state.json").exists():
        # The interrupted run fixed the decision time (default: when it started); keep only
        # that, so the results are identical — any other change of policy is refused below.
        saved = json.loads((out / WORK / "state.json").read_text(encoding="utf-8"))
        saved_at = saved.get("policy", {}).get("at")
        if isinstance(saved_at, str):
            policy = dataclasses.replace(policy, at=datetime.fromisoformat(saved_at))
            gate = Gate(snapshot, policy)
            state = _state_for(snapshot, policy, source, chunk_size)
    chunk_dir = _prepare_work_dir(out, state, resume)
    done = {int(p.stem) for p in chunk_dir.glob("*.parquet")}
    progress = on_progress or (lambda _n: None)

    def chunk_path(n: int) -> Path:
        return chunk_dir / f"{n:08d}.parquet"

    n_chunks = 0
    if workers <= 1:
        for chunk_no, items in _chunks(source, chunk_size):
            n_chunks = chunk_no + 1
            if chunk_no not in done:
                write_chunk(chunk_path(chunk_no), [d.record() for d in gate.decide_batch(items)])
            progress(len(items))
    else:
        ctx = _pool_context()
        # Workers get parts of chunks, so they stay evenly busy to the end even when a
        # chunk holds a few expensive items (images); a chunk is written once all its parts
        # are back, so what is on disk is still whole chunks.
        part_size = max(1, min(_PART_SIZE, chunk_size))
        pending: dict[Future[tuple[int, int, list[dict[str, Any]]]], int] = {}
        parts_left: dict[int, int] = {}
        results: dict[int, dict[int, list[dict[str, Any]]]] = {}
        with ProcessPoolExecutor(
            max_workers=workers,
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(str(snapshot_path), policy_to_json(policy)),
        ) as pool:

            def drain(block_until: int) -> None:
                while len(pending) > block_until:
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        size = pending.pop(future)
                        number, part, records = future.result()
                        results.setdefault(number, {})[part] = records
                        parts_left[number] -= 1
                        if parts_left[number] == 0:
                            got = results.pop(number)
                            write_chunk(
                                chunk_path(number), [r for p in sorted(got) for r in got[p]]
                            )
                            del parts_left[number]
                        progress(size)

            for chunk_no, items in _chunks(source, chunk_size):
                n_chunks = chunk_no + 1
                if chunk_no in done:
                    progress(len(items))
                    continue
                parts = [items[i : i + part_size] for i in range(0, len(items), part_size)]
                parts_left[chunk_no] = len(parts)
                for number, part in enumerate(parts):
                    pending[pool.submit(_decide_part, chunk_no, number, part)] = len(part)
                drain(_IN_FLIGHT_PARTS * workers)  # bounded in-flight work keeps memory flat
            drain(0)

    chunks = [chunk_path(n) for n in range(n_chunks)]
    return _finish(out, source, snapshot, policy, chunks, started, sign_key)


def _finish(
    out: Path,
    source: Source,
    snapshot: Snapshot,
    policy: Policy,
    chunks: list[Path],
    started: datetime,
    sign_key: Signer | None = None,
) -> GateRun:
    tally = Tally()
    admitted = OrdinalSet()
    grant_works: dict[str, set[str]] = {}
    other_works: set[str] = set()

    def on_row(row: dict[str, Any]) -> None:
        tally.add(row)
        if row["decision"] == "admit":
            admitted.add(int(row["ordinal"]))
            for evidence in json.loads(row["evidence"]):
                work_id, grant_id = evidence.get("work_id"), evidence.get("grant_id")
                if evidence.get("reason") == "grant-in-force" and work_id and grant_id:
                    grant_works.setdefault(grant_id, set()).add(work_id)
                elif work_id:
                    other_works.add(work_id)  # e.g. a voided registration that was seen

    if snapshot.log is None:
        raise InvalidInputError("the gate needs a verified snapshot (loaded with verify=True)")
    slog = snapshot.log
    count, root = write_decisions(chunks, out / "decisions.parquet", on_row)
    subset_dir = out / "admitted"
    if subset_dir.exists():
        shutil.rmtree(subset_dir)  # a resumed run rebuilds it from the decisions
    files = write_subset(source, admitted, out)
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "tool": f"consentry {__version__}",
        "started_at": started.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "snapshot": {
            "id": snapshot.id,
            "path": str(snapshot.path),
            "created_at": snapshot.manifest.get("created_at"),
            "signature": slog.signature,
            "operator_key_pinned": slog.key_pinned,
        },
        "log": {
            "origin": slog.origin,
            "operator_vkey": slog.verifier.to_vkey(),
            "checkpoint": slog.checkpoint_note,
            "checkpoint_size": snapshot.manifest["log"]["checkpoint_size"],
        },
        "policy": policy_to_json(policy),
        "input": source.identity(),
        "counts": tally.counts(),
        "decisions": {
            "file": "decisions.parquet",
            "sha256": sha256_file(out / "decisions.parquet"),
            "count": count,
            "merkle_root": root,
            "leaf": "RFC 9162 leaf hash of the RFC 8785 JSON of each row, in ordinal order",
        },
        "admitted": {
            "format": source.format,
            "files": sorted(p.relative_to(out).as_posix() for p in files),
        },
        "report": "report.html",
        **_log_evidence(slog, grant_works, other_works),
        "runner_vkey": sign_key.verifier().to_vkey() if sign_key is not None else None,
    }
    (out / "report.html").write_text(
        render_report(manifest, tally, snapshot.view), encoding="utf-8"
    )
    tmp = out / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(out / "manifest.json")
    sig_path = out / SIGNATURE_FILE
    if sign_key is not None:
        digest = sha256_file(out / "manifest.json")
        sig_tmp = out / (SIGNATURE_FILE + ".tmp")
        sig_tmp.write_text(sign_statement(sign_key, MANIFEST_STATEMENT, digest), encoding="utf-8")
        sig_tmp.replace(sig_path)
    elif sig_path.exists():
        sig_path.unlink()  # a resumed run without the key must not keep a stale signature
    shutil.rmtree(out / WORK)
    return GateRun(out, manifest)


def _log_evidence(
    slog: SnapshotLog, grant_works: dict[str, set[str]], other_works: set[str]
) -> dict[str, Any]:
    """The ``grants`` and ``works`` sections: logged events with proofs (see
    :func:`~consentry.gate.logbundle.related_events`), copied from the snapshot."""
    grants, works = related_events(slog.events, grant_works, other_works)
    return {
        "grants": {
            grant_id: {
                "works": sorted(grant_works[grant_id], key=natural_key),
                "events": [e.to_json() for e in events],
            }
            for grant_id, events in grants.items()
        },
        "works": {
            work_id: {"events": [e.to_json() for e in events]} for work_id, events in works.items()
        },
    }
