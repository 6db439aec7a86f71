"""The web benchmark's harness still works end to end (a few seconds at a low rate, SQLite).

The real figures come from ``python -m bench web`` (60 s per rate, both backends); this only
keeps the harness from rotting: a real ``consentry serve`` subprocess in production mode, the
SMTP sink process, the open-loop generator process, the zero-lost check against the database
and the sink, the closed-loop GET generator (the Python one, since wrk is not in CI) and the
INSERT floor.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def test_bench_web_harness_measures_and_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(REPO))
    monkeypatch.delenv("CONSENTRY_BENCH_WEB_PROFILE", raising=False)
    from bench import bench_web

    result = bench_web.measure_backend(
        "SQLite",
        tmp_path,
        database_url=None,
        seconds=2,
        rates=(30.0,),
        get_seconds=1,
        floor_rows=400,
        tokens_per_run=10,
        use_wrk=False,
    )

    [run] = result.runs
    assert run.load["offered"] == 60
    # At 30/s nothing may be refused: every submission is a 200 with the thank-you page ...
    assert run.load["statuses"] == {"200": 60}
    assert run.load["accepted"] == 60
    # ... and every accepted one is a pending row with its outbox row and delivered e-mail.
    assert run.states == {"pending": 60}
    assert (run.in_db, run.with_outbox, run.delivered, run.lost) == (60, 60, 60, 0)
    # Timings are the benchmark's business, not a test's (they depend on the machine's load):
    # only check that they were measured.
    assert run.drain_s >= 0
    assert 0 < run.load["p50_ms"] <= run.load["p95_ms"] <= run.load["p99_ms"]
    for figure in (result.count, result.healthz, result.page, result.page_signed):
        assert figure["tool"] == "python"
        assert figure["rate"] > 0
        assert set(figure["statuses"]) == {"200"}
    assert result.insert_rows_per_s > 0
    assert result.signed == 400  # the floor's rows are the validated signers of a public page

    report = bench_web.render([result], seconds=2, workers=1)
    assert "## Web service" in report
    assert "60 / 60 / 60 / 60 (lost 0)" in report
    assert "statement page, 400 validated signers" in report
