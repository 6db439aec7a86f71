"""Running a whole dataset through the gate: chunks, a process pool, resume, outputs.

Layout of ``--out DIR`` while a run is under way::

    .gate-work/state.json        what this run is (snapshot id, policy, input identity)
    .gate-work/chunks/NNNNNNNN.leaves    decisions of items [N*C, (N+1)*C) as their Merkle
                                 leaves and a summary (decisions.py), each written
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

import collections
import contextlib
import dataclasses
import gc
import json
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import (
    FIRST_COMPLETED,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import rfc8785

from consentry import __version__
from consentry.domain.bases import Policy
from consentry.errors import InvalidInputError
from consentry.filehash import sha256_file
from consentry.gate.decisions import (
    CHUNK_SUFFIX,
    ChunkSummary,
    DecisionsWriter,
    LeafEncoder,
    read_chunk,
    write_chunk,
)
from consentry.gate.engine import Gate
from consentry.gate.item import Item
from consentry.gate.logbundle import (
    MANIFEST_STATEMENT,
    natural_key,
    related_events,
    sign_statement,
)
from consentry.gate.policy import policy_from_mapping, policy_to_json
from consentry.gate.pool import pool_context
from consentry.gate.report import Tally, render_report
from consentry.gate.sinks import write_subset
from consentry.gate.snapshot import Snapshot, SnapshotLog
from consentry.gate.sources import (
    CHUNK_MAX_BYTES,
    DEFAULT_CHUNK_SIZE,
    RawRow,
    Source,
    chunked,
)
from consentry.ledger.note import Signer, Verifier
from consentry.orphans import when_parent_ends

__all__ = ["GateRun", "OrdinalSet", "run_gate"]

MANIFEST_FORMAT = "consentry-gate-manifest"
MANIFEST_VERSION = 2
"""2: the manifest carries log evidence (``log``, ``grants``, ``works``) and may be signed."""
WORK = ".gate-work"
_FIRST_PART_SIZE = 16
"""Items per task sent to a worker until the cost of an item is known."""
_PART_SECONDS = 0.1
"""CPU time a part should take. Every part costs the main process a task (pickling, a
future, merging its summary: ~0.5 ms of CPU, which on 2 cores the workers lack) and its
worker a pause between parts (~1 ms: the main process must take the result and send the
next part), so long parts keep both near 1 % (50 ms parts made 50,000 short texts ~0.1 s
slower with 2 workers than 100 ms parts; 20 ms parts, 0.3 s). That they end unevenly is
what the short parts at the end of the source (:func:`_part_bounds`) make up for. About 10
images make a part (~10 ms each), 500 short texts (~0.2 ms each)."""
_TAIL_DIVISOR = 8
"""The source's last items go out in parts this many times shorter than the others."""
_TAIL_PARTS_PER_WORKER = 2
"""How much of the source's end is cut short: this many ordinary parts' worth per worker."""
_IN_FLIGHT_PARTS = 4
"""Parts in flight per worker before the reader waits (bounds memory)."""
_DECIDE_WHILE_WORKERS_START = True
"""The main process decides parts itself until the first worker is up (~0.5 s of a core
that would otherwise wait); tests turn it off to make the workers decide everything."""
_QUEUED_CHUNKS = 8
"""Finished chunks waiting for the writer thread before the run waits for it."""
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


# -- deciding parts (in workers, or in-process) ------------------------------------------------


class _PartDecider:
    """Raw rows -> items -> decisions -> leaves and summary: all the per-item work of a run.

    Runs in each worker process (and in the main process with one worker), so the main
    process only splits the source and writes what comes back.
    """

    def __init__(self, gate: Gate, source: Source | None) -> None:
        self.gate = gate
        self.source = source
        self.encoder = LeafEncoder()

    def __call__(self, first: int, raws: list[Item | RawRow]) -> tuple[bytes, ChunkSummary]:
        items = [raw if isinstance(raw, Item) else self._item(raw) for raw in raws]
        return self.encoder.encode(self.gate.decide_batch(items), first)

    def _item(self, raw: RawRow) -> Item:
        if self.source is None:  # pragma: no cover - raw rows come only with their source
            raise RuntimeError("a raw row without its source")
        return self.source.item_from_raw(raw)


_WORKER: _PartDecider | None = None


def _exit_now() -> None:
    os._exit(1)


def _init_worker(snapshot_path: str, policy: dict[str, Any], source: Source | None) -> None:
    global _WORKER  # one gate per worker process, loaded once
    # A run killed outright (kill -9, a crash) never tells its workers: they blocked forever on
    # the task pipe or, with a result to send, on the lock of a full result pipe, each holding
    # its snapshot (~100 MB) and keeping the forkserver alive — and every --resume after a
    # crash added more. Nothing is lost by exiting: a decision counts once the main process
    # has written it.
    when_parent_ends(_exit_now, name="gate-parent-watch")
    # The main process verifies the snapshot's hashes; workers only need to read it.
    gate = Gate(Snapshot.load(snapshot_path, verify=False), policy_from_mapping(policy))
    _WORKER = _PartDecider(gate, source)
    # Everything so far (modules, the snapshot) lives as long as the worker: keep it out of
    # the cyclic collector's passes, and so in the pages the worker shares with the forkserver.
    gc.freeze()


def _ready() -> None:
    """A no-op task: submitting one per worker starts the workers (and their snapshot load)."""


def _decide_part(
    chunk_no: int, part: int, first: int, raws: list[Item | RawRow]
) -> tuple[int, int, bytes, ChunkSummary, float]:
    """Decide one part; also returns the CPU seconds it took (the main process sizes the
    next parts with it)."""
    assert _WORKER is not None  # noqa: S101 - set by the pool initializer
    started = time.thread_time()
    leaves, summary = _WORKER(first, raws)
    return chunk_no, part, leaves, summary, time.thread_time() - started


# -- main side ---------------------------------------------------------------------------------


class _Pool:
    """A process pool whose workers start (and load the snapshot) while the caller goes on.

    Starting a forkserver worker blocks until the server has imported the gate (~0.5 s);
    done from a thread, that overlaps the main process's verification of the snapshot —
    and :meth:`started` tells the caller when deciding parts itself stops being useful.
    """

    def __init__(self, workers: int, snapshot_path: Path, policy: Policy, source: Source) -> None:
        self.workers = workers
        self.executor = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=pool_context(),
            initializer=_init_worker,
            initargs=(
                str(snapshot_path),
                policy_to_json(policy),
                source if source.raw_rows else None,
            ),
        )
        self._warm: list[Future[None]] = []
        threading.Thread(target=self._start, name="gate-pool-start", daemon=True).start()

    def _start(self) -> None:
        with contextlib.suppress(RuntimeError):  # the run failed and shut the pool down
            for _ in range(self.workers):
                self._warm.append(self.executor.submit(_ready))

    def started(self) -> bool:
        """Has a worker started (or failed to: submitting then raises why)?"""
        return any(future.done() for future in list(self._warm))

    def shutdown(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


class _Totals:
    """What the end of the run needs from every chunk's summary: bounded memory."""

    def __init__(self) -> None:
        self.tally = Tally()
        self.admitted = OrdinalSet()
        self.grant_works: dict[str, set[str]] = {}
        self.other_works: set[str] = set()

    def add(self, summary: ChunkSummary) -> None:
        self.tally.merge(summary.tally)
        for ordinal in summary.admitted:
            self.admitted.add(ordinal)
        for grant_id, works in summary.grant_works.items():
            self.grant_works.setdefault(grant_id, set()).update(works)
        self.other_works.update(summary.other_works)  # e.g. a voided registration that was seen


class _Collector:
    """Takes decided chunks (in any order): writes each chunk file at once, and feeds the
    chunks in ordinal order — new ones, and on ``--resume`` the ones already on disk — to
    ``decisions.parquet``, the Merkle tree and the totals.

    With worker processes (``threaded``) this runs on a thread, so that the main thread
    keeps the workers fed while Arrow parses and compresses (C++, without the GIL); at most
    :data:`_QUEUED_CHUNKS` chunks wait, :meth:`add` blocks beyond that. When the main thread
    decides every item itself (one worker), the same work is done inline and only the chunk
    files' write and fsync (waiting for the disk) go to a thread: a collector thread then
    competed with the deciding thread for the GIL at every Arrow call — several hand-overs
    per chunk, each making the decider wait — and measured 0.3-1.3 s slower over 50,000
    short texts (the end of the run only closes the file either way).
    """

    def __init__(self, chunk_dir: Path, decisions: DecisionsWriter, *, threaded: bool) -> None:
        self.chunk_dir = chunk_dir
        self.decisions = decisions
        self.totals = _Totals()
        self._queue: queue.Queue[tuple[int, tuple[bytes, ChunkSummary] | None] | None] = (
            queue.Queue(maxsize=_QUEUED_CHUNKS)
        )
        self._ready: dict[int, tuple[bytes, ChunkSummary] | None] = {}
        self._next = 0
        self._error: BaseException | None = None
        self._writes: ThreadPoolExecutor | None = None
        self._written: collections.deque[Future[None]] = collections.deque()
        if threaded:
            self._thread: threading.Thread | None = threading.Thread(
                target=self._run, name="gate-collector", daemon=True
            )
            self._thread.start()
        else:
            self._thread = None
            self._writes = ThreadPoolExecutor(1, thread_name_prefix="gate-chunk-write")

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            if self._error is not None:
                continue  # keep draining, so that add() never blocks on a dead thread
            try:
                self._take(*job)
            except BaseException as exc:  # handed to the main thread, raised there
                self._error = exc

    def _take(self, number: int, decided: tuple[bytes, ChunkSummary] | None) -> None:
        path = _chunk_path(self.chunk_dir, number)
        if decided is not None and self._writes is not None:
            while len(self._written) >= _QUEUED_CHUNKS:
                self._written.popleft().result()  # bounded: raises a failed write here
            self._written.append(self._writes.submit(write_chunk, path, *decided))
        elif decided is not None:
            write_chunk(path, *decided)
        self._ready[number] = decided
        while self._next in self._ready:
            got = self._ready.pop(self._next)
            leaves, summary = (
                got if got is not None else read_chunk(_chunk_path(self.chunk_dir, self._next))
            )
            self.decisions.add(leaves, summary, _chunk_path(self.chunk_dir, self._next))
            self.totals.add(summary)
            self._next += 1

    def add(self, number: int, leaves: bytes, summary: ChunkSummary) -> None:
        """A chunk just decided."""
        self._check()
        if self._thread is None:
            self._take(number, (leaves, summary))
        else:
            self._queue.put((number, (leaves, summary)))

    def add_done(self, number: int) -> None:
        """A chunk an interrupted run decided: read back from its file when its turn comes."""
        self._check()
        if self._thread is None:
            self._take(number, None)
        else:
            self._queue.put((number, None))

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def close(self, n_chunks: int | None) -> None:
        """Write what is queued (whole chunks, so an interrupted run keeps them) and stop;
        with ``n_chunks`` (the run completed), check that every chunk reached the table and
        raise what went wrong on the thread. Closing twice does nothing more."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if self._writes is not None:
            # Whole chunk files are what --resume keeps: every write finishes, even when the
            # run failed; the first failed write is the run's error.
            self._writes.shutdown(wait=True)
            while self._written:
                failed = self._written.popleft().exception()
                if failed is not None and self._error is None:
                    self._error = failed
        if n_chunks is None:
            return
        self._check()
        if n_chunks is not None and self._next != n_chunks:
            raise RuntimeError(f"decided {self._next} of {n_chunks} chunks")


class _ItemCost:
    """Running estimate of the CPU seconds per item, from the parts the workers finished."""

    def __init__(self) -> None:
        self.items = 0
        self.seconds = 0.0

    def add(self, items: int, seconds: float) -> None:
        self.items += items
        self.seconds += seconds

    def part_size(self) -> int:
        if self.items < 4 * _FIRST_PART_SIZE or self.seconds <= 0:
            return _FIRST_PART_SIZE
        return max(1, round(_PART_SECONDS * self.items / self.seconds))


def _first_ordinal(raws: list[Item | RawRow]) -> int:
    first = raws[0]
    return first.ordinal if isinstance(first, Item) else first[0]


class _Identity:
    """The source's identity (every file's SHA-256), computed on a thread from the start.

    Hashing a folder of images reads all of it (129 MB for the 3,000-image benchmark); file
    reads and hashlib release the GIL, so this overlaps the snapshot's verification and the
    workers' start instead of delaying the first decision. Computed once: the state file
    (what ``--resume`` compares) and the manifest record the same identity.
    """

    def __init__(self, source: Source) -> None:
        self._source = source
        self._value: dict[str, Any] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="gate-identity", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._source.identity()
        except BaseException as exc:  # raised in the caller by get()
            self._error = exc

    def get(self) -> dict[str, Any]:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._value is not None  # noqa: S101 - set unless _error is
        return self._value


def _state_for(
    snapshot: Snapshot,
    policy: Policy,
    identity: dict[str, Any],
    chunk_size: int,
    chunk_max_bytes: int,
) -> dict[str, Any]:
    return {
        "snapshot_id": snapshot.id,
        "policy": policy_to_json(policy),
        "input": identity,
        "chunk_size": chunk_size,
        "chunk_max_bytes": chunk_max_bytes,
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
        for key in ("snapshot_id", "policy", "input", "chunk_size", "chunk_max_bytes"):
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
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    chunk_max_bytes: int = CHUNK_MAX_BYTES,
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
    if resume and (out / WORK / "state.json").exists():
        # The interrupted run fixed the decision time (default: when it started); keep only
        # that, so the results are identical — any other change of policy is refused below.
        try:
            saved = json.loads((out / WORK / "state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            saved = {}  # _prepare_work_dir says what is wrong with it
        saved_at = saved.get("policy", {}).get("at") if isinstance(saved, dict) else None
        if isinstance(saved_at, str):
            policy = dataclasses.replace(policy, at=datetime.fromisoformat(saved_at))
    identity = _Identity(source)
    with contextlib.ExitStack() as stack:
        pool = None
        if workers > 1:
            # Workers start and load the snapshot while it is verified here; they decide
            # nothing until it has verified.
            pool = _Pool(workers, snapshot_path, policy, source)
            stack.callback(pool.shutdown)
        # Verifies signature, content hashes and log proofs before anything runs.
        snapshot = Snapshot.load(
            snapshot_path, operator_key=operator_key, trust_snapshot_key=trust_snapshot_key
        )
        gate = Gate(snapshot, policy)
        out.mkdir(parents=True, exist_ok=True)
        state = _state_for(snapshot, policy, identity.get(), chunk_size, chunk_max_bytes)
        chunk_dir = _prepare_work_dir(out, state, resume)
        done = {int(p.name[: -len(CHUNK_SUFFIX)]) for p in chunk_dir.glob("*" + CHUNK_SUFFIX)}
        decisions = DecisionsWriter(out / "decisions.parquet", out / WORK / "decisions.parquet.tmp")
        collector = _Collector(chunk_dir, decisions, threaded=pool is not None)
        try:
            chunks = chunked(source, chunk_size, chunk_max_bytes)
            n_chunks = _decide_all(source, chunks, gate, pool, done, collector, on_progress)
            collector.close(n_chunks)
        except BaseException:
            collector.close(None)  # whole chunks already decided are kept for --resume
            decisions.abort()
            raise
        count, root = decisions.close()
    # The chunks are in decisions.parquet now. Deleting a file the disk has stored can wait
    # for the disk (online discard: ~4 ms a file here), so they go while the subset, report
    # and manifest are written; a crash meanwhile only means --resume decides them again.
    sweep = threading.Thread(
        target=_delete_chunks, args=(chunk_dir,), name="gate-chunk-sweep", daemon=True
    )
    sweep.start()
    try:
        result = _finish(
            out,
            source,
            identity.get(),
            snapshot,
            policy,
            count,
            root,
            collector.totals,
            started,
            sign_key,
        )
    finally:
        sweep.join()
    shutil.rmtree(out / WORK)  # the run is finished: manifest.json and no work directory
    return result


def _delete_chunks(chunk_dir: Path) -> None:
    for path in chunk_dir.glob("*" + CHUNK_SUFFIX):
        path.unlink(missing_ok=True)


def _chunk_path(chunk_dir: Path, n: int) -> Path:
    return chunk_dir / f"{n:08d}{CHUNK_SUFFIX}"


def _decide_all(
    source: Source,
    chunks: Iterator[tuple[int, list[Item | RawRow]]],
    gate: Gate,
    pool: _Pool | None,
    done: set[int],
    collector: _Collector,
    on_progress: Callable[[int], None] | None,
) -> int:
    """Decide every chunk of ``source`` (split as ``chunks``) not in ``done``, handing each
    to ``collector``; returns how many chunks the source has."""
    progress = on_progress or (lambda _n: None)
    decide_here = _PartDecider(gate, source)
    n_chunks = 0
    if pool is None:
        for chunk_no, raws in chunks:
            n_chunks = chunk_no + 1
            if chunk_no in done:
                collector.add_done(chunk_no)
            else:
                collector.add(chunk_no, *decide_here(_first_ordinal(raws), raws))
            progress(len(raws))
        return n_chunks
    # Workers get parts of chunks, so they stay evenly busy to the end even when a chunk
    # holds a few expensive items (images); a chunk is written once all its parts are back,
    # so what is on disk is still whole chunks.
    pending: dict[Future[tuple[int, int, bytes, ChunkSummary, float]], int] = {}
    parts_left: dict[int, int] = {}
    results: dict[int, dict[int, tuple[bytes, ChunkSummary]]] = {}
    cost = _ItemCost()

    def part_done(number: int, part: int, leaves: bytes, summary: ChunkSummary) -> None:
        results.setdefault(number, {})[part] = (leaves, summary)
        parts_left[number] -= 1
        if parts_left[number] == 0:
            got = results.pop(number)
            del parts_left[number]
            ordered = [got[p] for p in sorted(got)]
            whole = ordered[0][1]
            for _, later in ordered[1:]:
                whole.merge(later)
            collector.add(number, b"".join(leaves for leaves, _ in ordered), whole)

    def drain(block_until: int) -> None:
        while len(pending) > block_until:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                size = pending.pop(future)
                number, part, leaves, summary, seconds = future.result()
                cost.add(size, seconds)
                part_done(number, part, leaves, summary)
                progress(size)

    for chunk_no, raws, last in _with_last(chunks):
        n_chunks = chunk_no + 1
        if chunk_no in done:
            collector.add_done(chunk_no)
            progress(len(raws))
            continue
        first = _first_ordinal(raws)
        # Parts are slices of the chunk; how big changes nothing in the outputs.
        bounds = _part_bounds(len(raws), cost.part_size(), pool.workers if last else 0)
        parts_left[chunk_no] = len(bounds)
        for number, (start, end) in enumerate(bounds):
            part = raws[start:end]
            if _DECIDE_WHILE_WORKERS_START and not pool.started():
                # No worker is up yet (the forkserver is still importing): rather than
                # wait, decide here — the same code, so the same rows.
                started = time.thread_time()
                leaves, summary = decide_here(first + start, part)
                cost.add(len(part), time.thread_time() - started)
                part_done(chunk_no, number, leaves, summary)
                progress(len(part))
                continue
            future = pool.executor.submit(_decide_part, chunk_no, number, first + start, part)
            pending[future] = len(part)
        drain(_IN_FLIGHT_PARTS * pool.workers)  # bounded in-flight work keeps memory flat
    drain(0)
    return n_chunks


def _part_bounds(n: int, part_size: int, tail_workers: int) -> list[tuple[int, int]]:
    """``(start, end)`` of the parts of a chunk of ``n`` items.

    Parts hold ``part_size`` items, except at the end of the source (``tail_workers``, the
    number of workers, for the last chunk; 0 for the others): its last
    :data:`_TAIL_PARTS_PER_WORKER` ordinary parts per worker are cut
    :data:`_TAIL_DIVISOR` times shorter. Workers take parts in order, so whichever frees up
    first takes more of the short ones, and they end within a short part of each other
    instead of an ordinary one (~10 ms instead of ~100 ms).
    """
    size = max(1, part_size)
    tail = min(n, _TAIL_PARTS_PER_WORKER * tail_workers * size)
    short = max(1, size // _TAIL_DIVISOR)
    starts = [*range(0, n - tail, size), *range(n - tail, n, short)]
    return list(zip(starts, [*starts[1:], n], strict=False))  # none when n == 0


def _with_last(
    chunks: Iterator[tuple[int, list[Item | RawRow]]],
) -> Iterator[tuple[int, list[Item | RawRow], bool]]:
    """The chunks, each with whether it is the source's last: read one chunk ahead, so one
    more chunk is held (at most the chunk size in items or its byte cap in content)."""
    held = next(chunks, None)
    while held is not None:
        following = next(chunks, None)
        yield held[0], held[1], following is None
        held = following


def _finish(
    out: Path,
    source: Source,
    identity: dict[str, Any],
    snapshot: Snapshot,
    policy: Policy,
    count: int,
    root: str,
    totals: _Totals,
    started: datetime,
    sign_key: Signer | None = None,
) -> GateRun:
    tally, admitted = totals.tally, totals.admitted
    grant_works, other_works = totals.grant_works, totals.other_works
    if snapshot.log is None:
        raise InvalidInputError("the gate needs a verified snapshot (loaded with verify=True)")
    slog = snapshot.log
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
        "input": identity,
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
