"""Gate benchmark: overhead over the recognisers alone, parallel speed-up, memory vs size.

Builds a registry of short texts (real words from the demo files, varied by a seeded RNG),
a snapshot, and JSON Lines datasets of 10^4 and 10^6 items (10^5 with --quick) mixing
registered and unregistered texts, then measures in the same run:

- recognisers alone: ``Gate.recognise`` on every item, in-process (the floor);
- ``consentry gate`` end to end with 1 worker (ratio to the floor; target <= 1.15);
- the same with 2 workers (speed-up; target >= 1.8 on 2 cores);
- peak RSS of the gate process at both dataset sizes (target: flat in dataset size).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from consentry.cli import main as cli_main
from consentry.gate.engine import Gate
from consentry.gate.sources import open_source

CONSENTRY = str(Path(sys.executable).parent / "consentry")
WORDS = (
    "light keeper tide salt lantern harbour north road radio page stone night rain glass "
    "gull net fold hour step iron kitchen table count promise ship keeper absence sea"
).split()


def _text(rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n_words)) + ".\n"


def _cli(*args: str) -> dict[str, object]:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli_main([*args, "--json"])
    if code != 0:
        raise RuntimeError(f"consentry {' '.join(args)} failed")
    lines = [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]
    return lines[0] if lines else {}


def _registry(root: Path, n_works: int, rng: random.Random) -> tuple[Path, list[str], str]:
    """A registry of ``n_works`` short texts, half of them granted, and its snapshot."""
    works_dir = root / "works"
    works_dir.mkdir()
    texts = []
    for i in range(n_works):
        text = _text(rng, 60)
        texts.append(text)
        (works_dir / f"w{i:05d}.txt").write_text(text, encoding="utf-8")
    snap, lab = _registry_of(root, works_dir, n_works)
    return snap, texts, lab


def _registry_of(root: Path, works_dir: Path, n_works: int) -> tuple[Path, str]:
    home = root / "home"
    _cli("--home", str(home), "init")
    ann = str(_cli("--home", str(home), "party", "add", "--name", "Ann")["id"])
    lab = str(_cli("--home", str(home), "party", "add", "--name", "Lab")["id"])
    _cli("--home", str(home), "work", "register", str(works_dir), "--holder", ann)
    for i in range(0, n_works, 2):  # half the works granted
        _cli(
            "--home",
            str(home),
            "grant",
            "create",
            "--work",
            f"W{i + 1}",
            "--licensee",
            lab,
            "--purpose",
            "train-genai",
            "--by",
            ann,
        )
    snap = root / "snapshot"
    _cli("--home", str(home), "snapshot", "export", "--out", str(snap))
    return snap, lab


def _image_run(root: Path, rng: random.Random, quick: bool) -> tuple[int, float, float, float]:
    """(items, floor, 1 worker, 2 workers) on a folder of real images, a third registered
    (re-encoded at JPEG q80 so they must be recognised, not byte-matched)."""
    from PIL import Image

    from bench.imagecorpus import corpus

    images = corpus()
    rng.shuffle(images)
    n_works, n_items = (60, 600) if quick else (200, 3000)
    works_dir = root / "works"
    works_dir.mkdir()
    for path in images[:n_works]:
        (works_dir / path.name).write_bytes(path.read_bytes())
    snap, lab = _registry_of(root, works_dir, n_works)
    dataset = root / "images"
    dataset.mkdir()
    others = images[n_works : n_works + n_items]
    for i in range(n_items):
        source = images[i % n_works] if i % 3 == 0 else others[i]
        with Image.open(source) as im:
            im.convert("RGB").save(dataset / f"{i:06d}.jpg", quality=80)
    floor = _recognise_only(dataset, snap, lab)
    t1, _ = _run_gate(dataset, snap, lab, root / "g1", 1)
    t2, _ = _run_gate(dataset, snap, lab, root / "g2", 2)
    return n_items, floor, t1, t2


def _dataset(path: Path, n: int, texts: list[str], rng: random.Random) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            text = rng.choice(texts) if i % 3 == 0 else _text(rng, 60)
            fh.write(json.dumps({"id": f"r{i}", "text": text, "source": "bench"}) + "\n")


# Runs the gate command and prints its peak RSS: a fresh wrapper per run, so the accounting of
# RUSAGE_CHILDREN covers exactly that run (and its worker processes).
_PEAK_WRAPPER = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
    "stdout=subprocess.DEVNULL); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def _run_gate(source: Path, snap: Path, lab: str, out: Path, workers: int) -> tuple[float, int]:
    """Wall time and peak RSS (KiB, the largest process) of one `consentry gate` run."""
    started = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _PEAK_WRAPPER,
            CONSENTRY,
            "gate",
            str(source),
            "--snapshot",
            str(snap),
            "--licensee",
            lab,
            "--purpose",
            "train-genai",
            "--out",
            str(out),
            "--operator-key",
            str(snap.parent / "home" / "keys" / "operator.pub"),
            "--workers",
            str(workers),
            "--json",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return time.perf_counter() - started, int(done.stdout.strip().splitlines()[-1])


def _recognise_only(source: Path, snap: Path, lab: str) -> float:
    gate = Gate.from_snapshot(
        snap,
        policy={"licensee": lab, "purpose": "train-genai"},
        operator_key=snap.parent / "home" / "keys" / "operator.pub",
    )
    started = time.perf_counter()
    for item in open_source(source):
        if item.data is not None:
            gate.recognise(item.data, item.media_type, item.key)
    return time.perf_counter() - started


def run(quick: bool) -> str:
    rng = random.Random(20261126)
    timed = 20_000 if quick else 50_000
    small, large = (10_000, 100_000) if quick else (10_000, 1_000_000)
    with tempfile.TemporaryDirectory(prefix="consentry-bench-gate-") as tmp:
        root = Path(tmp)
        snap, texts, lab = _registry(root, 200, rng)
        timed_src, small_src, large_src = (root / f"{n}.jsonl" for n in ("t", "s", "l"))
        _dataset(timed_src, timed, texts, rng)
        floor = _recognise_only(timed_src, snap, lab)
        t1, _ = _run_gate(timed_src, snap, lab, root / "g1", 1)
        t2, _ = _run_gate(timed_src, snap, lab, root / "g2", 2)
        _dataset(small_src, small, texts, rng)
        _, rss_small = _run_gate(small_src, snap, lab, root / "g3", 1)
        _dataset(large_src, large, texts, rng)
        t_large, rss_large = _run_gate(large_src, snap, lab, root / "g4", 1)
    with tempfile.TemporaryDirectory(prefix="consentry-bench-gate-img-") as tmp:
        n_img, floor_img, t1_img, t2_img = _image_run(Path(tmp), rng, quick)
    rows = [
        ("recognisers alone (floor), in-process", floor, "1.00"),
        ("gate, 1 worker, end to end (new process)", t1, f"{t1 / floor:.2f}"),
        ("gate, 2 workers, end to end (new process)", t2, f"{t2 / floor:.2f}"),
    ]
    table = "\n".join(
        f"| {name} | {took:.2f} s | {timed / took:,.0f} items/s | {ratio} |"
        for name, took, ratio in rows
    )
    img_rows = [
        ("recognisers alone (floor), in-process", floor_img),
        ("gate, 1 worker, end to end (new process)", t1_img),
        ("gate, 2 workers, end to end (new process)", t2_img),
    ]
    img_table = "\n".join(
        f"| {name} | {took:.2f} s | {n_img / took:,.0f} items/s | {took / floor_img:.2f} |"
        for name, took in img_rows
    )
    return f"""## Gate ({timed:,} text items; 200 registered works)

| run | time | rate | ÷ floor |
|---|---|---|---|
{table}

- Overhead of the gate over the recognisers (1 worker): **{t1 / floor:.2f}×** (target ≤ 1.15;
  includes process start-up, snapshot verification, source reading, chunk writes, subset,
  report and manifest).
- Speed-up with 2 workers: **{t1 / t2:.2f}×** (target ≥ 1.8; the main process reads the
  source and writes chunks on the same 2 cores).

### Images ({n_img:,} real images, a third re-encoded copies of registered ones)

| run | time | rate | ÷ floor |
|---|---|---|---|
{img_table}

- Overhead (1 worker): **{t1_img / floor_img:.2f}×**; speed-up with 2 workers:
  **{t1_img / t2_img:.2f}×**.

- Peak RSS (largest process): {rss_small / 1024:.0f} MiB at {small:,} items,
  {rss_large / 1024:.0f} MiB at {large:,} items ({t_large:.1f} s,
  {large / t_large:,.0f} items/s) — memory is flat when these two agree.
"""
