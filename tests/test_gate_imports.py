"""What `consentry gate` loads before it decides anything: one BLAS thread, no database code."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

_PROBE = """
import json, os, sys
from click import Context
from consentry.cli.main import cli
command = sys.argv[1]
cli.get_command(Context(cli), command)  # the command's module, then what it runs:
if command == "gate":
    import consentry.gate.run
else:  # the recognisers, which match and check run
    import consentry.index.hamming
import consentry.gate.blas as blas
print(json.dumps({
    "too_late": blas.LOADED_TOO_LATE,
    "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
    "numpy": "numpy" in sys.modules,
    "heavy": sorted(m for m in ("sqlalchemy", "alembic", "fastapi", "consentry.store",
                                "consentry.ledger.log", "iscc_core", "pydantic")
                    if m in sys.modules),
}))
"""


def _probe(command: str = "gate", **env: str) -> dict[str, object]:
    child = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    child.update(env)
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, command],
        capture_output=True,
        text=True,
        env=child,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize("command", ["gate", "match", "check", "work"])
def test_commands_pin_one_blas_thread_before_numpy_loads(command: str) -> None:
    got = _probe(command)
    assert got["numpy"] is True  # the recognisers are loaded ...
    assert got["too_late"] is False  # ... after the BLAS thread count was set
    assert got["blas_threads"] == "1"


def test_a_blas_thread_count_the_user_set_is_kept() -> None:
    assert _probe(OPENBLAS_NUM_THREADS="2")["blas_threads"] == "2"


def test_gate_command_does_not_import_the_registry_database_code() -> None:
    # Snapshot loading is the gate's; exporting (SQLAlchemy, tables, ledger) is the registry's,
    # and so is the ISCC (iscc-core and the pydantic it brings: registration only).
    assert _probe()["heavy"] == []
