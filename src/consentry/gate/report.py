"""Counting decisions as they stream by, and the self-contained HTML report of a gate run.

The report is one HTML file with inline CSS and inline SVG charts: no scripts, no network,
so it opens anywhere (and renders the same in a headless browser, which the tests check).
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from consentry.domain import MemoryRegistryView

__all__ = ["Tally", "render_report"]

_SAMPLES = 50

_CSS = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; }
body { color: #1b1f24; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h2 { margin-top: 2rem; font-size: 1.15rem; }
.muted { color: #57606a; }
.big { font-size: 2rem; font-weight: 600; }
.cards { display: flex; gap: 1rem; }
.card { border: 1px solid #d0d7de; border-radius: 8px; padding: .8rem 1.2rem; }
table { border-collapse: collapse; width: 100%; }
td, th { border-bottom: 1px solid #d0d7de; padding: .3rem .5rem; text-align: left; }
svg text { font: 13px system-ui, sans-serif; fill: #1b1f24; }
code { background: #f6f8fa; padding: 0 .2rem; }
"""


@dataclass
class Tally:
    """Aggregates over the decision rows; bounded memory whatever the dataset size."""

    items: int = 0
    by_decision: Counter[str] = field(default_factory=Counter)
    by_reason: Counter[str] = field(default_factory=Counter)
    by_basis: Counter[str] = field(default_factory=Counter)
    by_source: Counter[tuple[str, str]] = field(default_factory=Counter)
    works: Counter[str] = field(default_factory=Counter)
    denied_samples: list[dict[str, Any]] = field(default_factory=list)

    def add(self, row: dict[str, Any]) -> None:
        """Count one row of the decision table."""
        self.add_fields(
            row["key"],
            row["decision"],
            row["reasons"],
            row["basis"],
            row["source"],
            row["work_ids"],
            row["error"],
        )

    def add_fields(
        self,
        key: str,
        decision: str,
        reasons: Sequence[str],
        basis: str | None,
        source: str | None,
        work_ids: Sequence[str],
        error: str | None,
    ) -> None:
        """:meth:`add` without building the row (the gate's workers count every item)."""
        self.items += 1
        self.by_decision[decision] += 1
        for reason in reasons:
            self.by_reason[reason] += 1
        if basis:
            self.by_basis[basis] += 1
        self.by_source[(source or "(unstated)", decision)] += 1
        for work_id in work_ids:
            self.works[work_id] += 1
        if decision == "deny" and len(self.denied_samples) < _SAMPLES:
            self.denied_samples.append({"key": key, "reasons": list(reasons), "error": error})

    def merge(self, other: Tally) -> None:
        """Add ``other``'s rows as if they had come after this tally's own.

        Counters keep first-seen order (ties in the report are listed in that order), and
        ``Counter.update`` appends keys it has not seen, so merging per-chunk tallies in
        ordinal order gives exactly the tally of adding every row in ordinal order.
        """
        self.items += other.items
        self.by_decision.update(other.by_decision)
        self.by_reason.update(other.by_reason)
        self.by_basis.update(other.by_basis)
        self.by_source.update(other.by_source)
        self.works.update(other.works)
        room = _SAMPLES - len(self.denied_samples)
        if room > 0:
            self.denied_samples.extend(other.denied_samples[:room])

    def to_json(self) -> dict[str, Any]:
        """JSON-ready and order-preserving (see :meth:`merge`), for the chunk files."""
        return {
            "items": self.items,
            "by_decision": dict(self.by_decision),
            "by_reason": dict(self.by_reason),
            "by_basis": dict(self.by_basis),
            "by_source": [[src, decision, n] for (src, decision), n in self.by_source.items()],
            "works": dict(self.works),
            "denied_samples": self.denied_samples,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Tally:
        return cls(
            items=int(data["items"]),
            by_decision=Counter(data["by_decision"]),
            by_reason=Counter(data["by_reason"]),
            by_basis=Counter(data["by_basis"]),
            by_source=Counter({(s, d): n for s, d, n in data["by_source"]}),
            works=Counter(data["works"]),
            denied_samples=list(data["denied_samples"]),
        )

    def counts(self) -> dict[str, Any]:
        return {
            "items": self.items,
            "admit": self.by_decision.get("admit", 0),
            "deny": self.by_decision.get("deny", 0),
            "by_reason": dict(sorted(self.by_reason.items())),
            "by_basis": dict(sorted(self.by_basis.items())),
        }


def _bars(counts: list[tuple[str, int]], colour: str) -> str:
    """A horizontal bar chart as inline SVG."""
    if not counts:
        return "<p class=muted>none</p>"
    top = max(n for _, n in counts) or 1
    row_h, label_w, bar_w = 22, 230, 380
    parts = [
        f'<svg role="img" width="{label_w + bar_w + 80}" height="{row_h * len(counts) + 4}" '
        f'xmlns="http://www.w3.org/2000/svg">'
    ]
    for i, (label, n) in enumerate(counts):
        y = i * row_h + 2
        w = max(1, round(bar_w * n / top))
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">{html.escape(label)}</text>'
            f'<rect x="{label_w}" y="{y}" width="{w}" height="{row_h - 6}" fill="{colour}"/>'
            f'<text x="{label_w + w + 6}" y="{y + 15}">{n}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _card(label: str, value: int, note: str = "") -> str:
    extra = f'<div class="muted">{html.escape(note)}</div>' if note else ""
    return (
        f'<div class="card"><div class="muted">{label}</div>'
        f'<div class="big" id="{label}">{value}</div>{extra}</div>'
    )


def render_report(manifest: dict[str, Any], tally: Tally, view: MemoryRegistryView) -> str:
    counts = tally.counts()
    policy = manifest["policy"]
    total = max(counts["items"], 1)
    admit_pct = 100.0 * counts["admit"] / total
    sources: dict[str, Counter[str]] = {}
    for (source, decision), n in tally.by_source.items():
        sources.setdefault(source, Counter())[decision] += n
    source_rows = [
        [s, str(c["admit"]), str(c["deny"])]
        for s, c in sorted(sources.items(), key=lambda kv: -sum(kv[1].values()))[:20]
    ]
    work_rows: list[list[str]] = []
    holders: Counter[str] = Counter()
    for work_id, n in tally.works.most_common():
        work = view.work(work_id)
        names = []
        for holder_id in sorted(work.holder_ids) if work else []:
            party = view.party(holder_id)
            names.append(f"{party.name} ({holder_id})" if party else holder_id)
            holders[names[-1]] += n
        if len(work_rows) < 20:
            title = work.title if work else "(not in snapshot)"
            work_rows.append([work_id, title, ", ".join(names), str(n)])
    sample_rows = [
        [s["key"], ", ".join(s["reasons"]), s["error"] or ""] for s in tally.denied_samples
    ]
    snapshot = manifest["snapshot"]
    esc = html.escape
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Consentry gate report</title>
<style>{_CSS}</style></head><body>
<h1>Gate report</h1>
<p class="muted">Licensee <code>{esc(policy["licensee"])}</code>,
purpose <code>{esc(policy["purpose"])}</code>, at <code>{esc(policy["at"])}</code>;
snapshot <code>{esc(snapshot["id"])}</code>;
input {esc(manifest["input"].get("format", "?"))}
<code>{esc(str(manifest["input"].get("path", "")))}</code>.</p>
<div class="cards">
{_card("items", counts["items"])}
{_card("admitted", counts["admit"], f"{admit_pct:.1f} %")}
{_card("denied", counts["deny"])}
</div>
<h2>Decisions by reason</h2>
{_bars(sorted(tally.by_reason.items(), key=lambda kv: -kv[1]), "#cf222e")}
<h2>Admitted by basis</h2>
{_bars(sorted(tally.by_basis.items(), key=lambda kv: -kv[1]), "#1a7f37")}
<h2>By source</h2>
{_table(["source", "admitted", "denied"], source_rows)}
<h2>Most matched registered works</h2>
{_table(["work", "title", "holders", "items"], work_rows)}
<h2>Holders whose works were matched</h2>
{_bars(holders.most_common(15), "#0969da")}
<h2>Denied items (first {len(sample_rows)})</h2>
{_table(["item", "reasons", "error"], sample_rows)}
<p class="muted">Decisions Merkle root <code>{esc(manifest["decisions"]["merkle_root"])}</code>
over {manifest["decisions"]["count"]} rows of <code>decisions.parquet</code>;
produced by {esc(manifest["tool"])}.</p>
</body></html>
"""
