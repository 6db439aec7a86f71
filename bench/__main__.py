"""Run the benchmarks: ``python -m bench [NAME ...] [--quick]``.

Each ``bench/bench_<name>.py`` module exposes ``run(quick: bool) -> str`` returning a Markdown
section. Results are printed and written to ``bench/results/<name>.md`` (not committed); the
figures quoted in docs/benchmarks.md come from these files, with the machine they ran on.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# One BLAS thread, before any benchmark loads numpy: the benchmarks report CPU time per core
# (time.process_time), which OpenBLAS's threads spinning between small matrix products would
# inflate several times over (bench image_scale read 53 instead of 21 ms a query at 21,076
# works), and `python -m bench` runs every benchmark in one process, so the first to load
# numpy would decide for all. A count the user set wins; bench gate sets its own for the
# processes it starts.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def main() -> int:
    names = sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", choices=[*names, []], help="benchmarks to run")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    print(f"# Consentry benchmarks\n\nMachine: {machine()}\n", flush=True)
    for name in args.names or names:
        started = time.perf_counter()
        module = importlib.import_module(f"bench.bench_{name}")
        section = module.run(quick=args.quick)
        took = time.perf_counter() - started
        text = f"{section.rstrip()}\n\n_(bench {name}: {took:.1f} s on {machine()})_\n"
        (out_dir / f"{name}.md").write_text(text, encoding="utf-8")
        print(text, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
