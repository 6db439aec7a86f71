"""``consentry demo``: a realistic registry walk-through in a throw-away home.

It runs the real commands (in this process) and prints each one with its output, so what a
reader sees is exactly what the CLI does: registration by two co-holders, a grant pending
until both agree, revocation, reservation, a dispute, verification requirements, and a deny
for each reason next to the admits.
"""

from __future__ import annotations

import functools
import io
import json
import shlex
import sys
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from PIL import Image, ImageDraw

from consentry.cli.output import json_option

__all__ = ["demo", "write_demo_files"]

STORY = """The Lighthouse Keeper's Daughter

Every evening Mara climbed the hundred and twelve steps of the lighthouse with a can of oil
and a cloth for the great lens. Her father had kept the light for thirty years; now his knees
kept him at the kitchen table, where he listened for her footsteps on the iron stairs and
counted them, as if the counting held the building up.
"""
POEM = """Salt Hours

I keep the hours the tide forgets,
the ones that fall between the nets;
I fold them small, I let them dry,
and hang them where the gulls go by.
"""
LYRICS = """Northbound (lyrics)

We drove the coast road north again, the radio was low,
you said the sea looked like a page that nobody could know.
"""
ESSAY = """On Keeping Lights

A light that is kept is a promise that is repeated. Nobody thanks the keeper for the ships
that did not founder; the keeper's whole success is an absence.
"""


def write_demo_files(folder: Path) -> dict[str, Path]:
    """The demo's files: texts and a drawn cover image (real files, made on the spot)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "story": ("story.txt", STORY),
        "poem": ("poem.txt", POEM),
        "lyrics": ("lyrics.txt", LYRICS),
        "essay": ("essay.txt", ESSAY),
        "unregistered": ("blog-post.txt", "Ten tips for better sourdough.\n"),
        "diary": ("diary.txt", "12 March. Rain on the lantern glass all night.\n"),
    }
    out: dict[str, Path] = {}
    for key, (name, text) in files.items():
        out[key] = folder / name
        out[key].write_text(text, encoding="utf-8")
    cover = Image.new("RGB", (480, 640), (18, 40, 72))
    draw = ImageDraw.Draw(cover)
    draw.rectangle((200, 180, 280, 560), fill=(235, 235, 220))
    draw.polygon([(190, 180), (290, 180), (240, 120)], fill=(200, 60, 40))
    for i in range(12):
        draw.line((240, 150, 40 + i * 40, 20), fill=(250, 220, 120), width=2)
    out["cover"] = folder / "cover.jpg"
    cover.save(out["cover"], quality=90)
    out["empty"] = folder / "corrupt.txt"
    out["empty"].write_bytes(b"")
    return out


class _Runner:
    def __init__(self, home: Path, as_json: bool) -> None:
        self.home = home
        self.as_json = as_json

    def __call__(self, *args: str, note: str = "", quiet: bool = False) -> list[dict[str, Any]]:
        """Run ``consentry ARGS --json`` and print it as a reader would type it."""
        from consentry.cli.main import main

        shown = "consentry " + " ".join(shlex.quote(a) for a in args)
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = main(["--home", str(self.home), *args, "--json"])
        if code != 0:
            raise click.ClickException(f"demo step failed: {shown}: {err.getvalue().strip()}")
        rows = [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]
        if self.as_json:
            # One JSON line per step: the command and what it printed with --json.
            record = {"command": ["consentry", *args], "note": note, "results": rows}
            sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
        elif not quiet:
            click.echo(click.style(f"$ {shown}", bold=True) + (f"   # {note}" if note else ""))
            for row in rows:
                click.echo("  " + _summary(row))
        return rows


def _summary(row: dict[str, Any]) -> str:
    if "decision" in row:
        evidence = [e for e in row["evidence"] if e.get("grant_id")]
        grant = f" (grant {evidence[0]['grant_id']})" if evidence else ""
        mark = "ADMIT" if row["decision"] == "admit" else "DENY "
        return f"{mark} {Path(row['path']).name}: {', '.join(row['reasons'])}{grant}"
    if "work_id" in row and "path" in row:
        extra = f"  disputes {', '.join(row['disputes'])}" if row.get("disputes") else ""
        return f"{row['work_id']}  {Path(row['path']).name}{extra}"
    if "grant_id" in row:
        agreed = ", ".join(a["party_id"] for a in row["agreements"])
        revoked = " revoked" if row["revocation"] else ""
        return f"{row['grant_id']}  agreed by {agreed}{revoked}"
    if "purposes" in row and "lifted_at" in row:
        state = "lifted" if row["lifted_at"] else "reserved"
        return (
            f"{row['id']}  {state} {row['work_id'] or 'all works'} for {', '.join(row['purposes'])}"
        )
    if "works" in row and "resolution" in row:
        return f"{row['id']}  {' vs '.join(row['works'])}: {row['resolution'] or 'open'}"
    if "counts" in row and "id" in row:
        return f"snapshot {row['id'][:23]}…  " + ", ".join(
            f"{n} {k}" for k, n in row["counts"].items()
        )
    if "grants" in row:
        states = [f"{g['grant_id']}:{g['state']}" for g in row["grants"]]
        return f"{row['work_id']}  " + "  ".join(states)
    return json.dumps(row, ensure_ascii=False)


@click.command()
@click.option(
    "--home",
    "demo_home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the demo registry here (default: a temporary folder, deleted afterwards).",
)
@json_option
def demo(demo_home: Path | None, as_json: bool) -> None:
    """Seed a small realistic registry and walk through admits and every kind of deny.

    With --json, prints one JSON line per step (the command and its JSON results) and the
    narration goes to stderr.
    """
    if demo_home is not None:
        _walkthrough(demo_home, as_json)
        return
    with tempfile.TemporaryDirectory(prefix="consentry-demo-") as tmp:
        _walkthrough(Path(tmp), as_json)
        _say("(That folder is temporary and now deleted; pass --home DIR to keep it.)", as_json)


def _say(text: str, as_json: bool) -> None:
    click.echo(text, err=as_json)


def _walkthrough(root: Path, as_json: bool) -> None:
    home = root / "registry"
    files = write_demo_files(root / "files")
    run = _Runner(home, as_json)
    say = functools.partial(_say, as_json=as_json)
    say(f"Demo registry in {home}; files in {root / 'files'}\n")
    run("init", quiet=True)

    def party(name: str, email: str, kind: str = "person") -> str:
        row = run("party", "add", "--name", name, "--email", email, "--kind", kind, quiet=True)
        return str(row[0]["id"])

    ann = party("Ann Author", "ann@example.org")
    bo = party("Bo Publisher", "rights@bo-press.example", "organisation")
    lab = party("Lumen Lab", "licensing@lumen.example", "organisation")
    other = party("Other AI Co", "legal@other.example", "organisation")
    mal = party("Mal Claimant", "mal@example.net")
    op = party("Registry Operator", "operator@consentry.example", "organisation")
    run("party", "verify", op, "--level", "operator", quiet=True)
    say(
        f"Parties: Ann {ann}, Bo {bo} (co-holder), Lumen Lab {lab}, Other AI Co {other}, "
        f"Mal {mal}, operator {op}\n"
    )

    say(click.style("1. Register works: only fingerprints are stored.", fg="cyan"))
    rows = run(
        "work",
        "register",
        str(files["story"]),
        str(files["cover"]),
        "--holder",
        ann,
        "--co-holder",
        bo,
    )
    story, cover = rows[0]["work_id"], rows[1]["work_id"]
    poem = run("work", "register", str(files["poem"]), "--holder", ann)[0]["work_id"]
    lyrics = run("work", "register", str(files["lyrics"]), "--holder", ann, "--co-holder", bo)[0][
        "work_id"
    ]
    essay = run("work", "register", str(files["essay"]), "--holder", ann)[0]["work_id"]

    def check(
        key: str, note: str, *extra: str, licensee: str = lab, purpose: str = "train-genai"
    ) -> None:
        run(
            "check",
            str(files[key]),
            "--licensee",
            licensee,
            "--purpose",
            purpose,
            *extra,
            note=note,
        )

    say(click.style("\n2. A grant needs every holder.", fg="cyan"))
    g1 = run(
        "grant",
        "create",
        "--work",
        story,
        "--licensee",
        lab,
        "--purpose",
        "train-genai",
        "--by",
        ann,
        "--expires",
        "2027-12-31",
        "--payment",
        "per-item",
        "--amount",
        "0.05",
        "--currency",
        "EUR",
    )[0]["grant_id"]
    check("story", "pending: Bo has not agreed")
    run("grant", "agree", g1, "--by", bo)
    check("story", "admit, with the grant as evidence")
    check("story", "another purpose", purpose="search")
    check("story", "another licensee", licensee=other)
    check("story", "after the grant expired", "--at", "2028-01-15")

    say(click.style("\n3. Revocation ends future use.", fg="cyan"))
    g2 = run(
        "grant",
        "create",
        "--work",
        cover,
        "--licensee",
        lab,
        "--purpose",
        "train-genai",
        "--by",
        ann,
    )[0]["grant_id"]
    run("grant", "agree", g2, "--by", bo)
    check("cover", "agreed by both")
    run("grant", "revoke", g2, "--by", ann, "--reason", "changed my mind")
    check("cover", "revoked")

    say(click.style("\n4. Not yet valid; holder verification too low.", fg="cyan"))
    start = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
    run(
        "grant",
        "create",
        "--work",
        poem,
        "--licensee",
        lab,
        "--purpose",
        "train-genai",
        "--by",
        ann,
        "--not-before",
        start,
    )
    check("poem", f"valid only from {start}")
    run(
        "grant",
        "create",
        "--work",
        essay,
        "--licensee",
        lab,
        "--purpose",
        "rag",
        "--by",
        ann,
        "--min-verification",
        "email",
    )
    check("essay", "Ann's e-mail is not verified yet", purpose="rag")
    run("party", "verify", ann, "--level", "email", quiet=True)
    check("essay", "after `consentry party verify " + ann + " --level email`", purpose="rag")

    say(click.style("\n5. A co-holder's reservation beats the other's grant.", fg="cyan"))
    g5 = run(
        "grant",
        "create",
        "--work",
        lyrics,
        "--licensee",
        lab,
        "--purpose",
        "train-genai",
        "--by",
        ann,
    )[0]["grant_id"]
    run("grant", "agree", g5, "--by", bo, quiet=True)
    run("reserve", "--by", bo, "--work", lyrics, "--purpose", "train-genai")
    check("lyrics", "reserved by Bo")

    say(click.style("\n6. A dispute freezes both sides' grants.", fg="cyan"))
    rows = run(
        "work",
        "register",
        str(files["essay"]),
        "--holder",
        mal,
        note="someone else claims the essay",
    )
    check("essay", "disputed", purpose="rag")
    dispute = rows[0]["disputes"][0]
    run(
        "dispute",
        "resolve",
        dispute,
        "--by",
        op,
        "--void",
        rows[0]["work_id"],
        "--note",
        "Ann showed drafts",
    )
    check("essay", "after the operator voided the false claim", purpose="rag")

    say(click.style("\n7. Nothing registered, no grant, unreadable: deny.", fg="cyan"))
    check("unregistered", "opt-in: an unknown item is not admitted")
    run("work", "register", str(files["diary"]), "--holder", ann, quiet=True)
    check("diary", "registered, but Ann granted nothing")
    check("empty", "a corrupt/empty file")

    say(click.style("\n8. Who may use the story now?", fg="cyan"))
    run("status", story)

    say(click.style("\n9. The gate: a dataset checked offline against a snapshot.", fg="cyan"))
    snap = root / "registry.snapshot"
    run("snapshot", "export", "--out", str(snap))
    dataset = _demo_dataset(root / "dataset", files)
    policy = root / "policy.toml"
    policy.write_text(
        f'licensee = "{lab}"\npurpose = "train-genai"\n'
        'bases = ["grant", "open-licence"]\nopen_licences = ["CC0-1.0"]\n',
        encoding="utf-8",
    )
    reports = []
    for name, source in (("files", dataset / "files"), ("texts", dataset / "texts.parquet")):
        out = root / f"gated-{name}"
        rows = run(
            "gate",
            str(source),
            "--snapshot",
            str(snap),
            "--policy",
            str(policy),
            "--out",
            str(out),
            "--operator-key",  # pin the registry's public key: the snapshot must be its
            str(home / "keys" / "operator.pub"),
            quiet=True,
        )
        counts = rows[0]
        shown = (
            f"consentry gate {source.relative_to(root)} --snapshot registry.snapshot "
            f"--policy policy.toml --operator-key operator.pub --out {out.name}"
        )
        say(click.style(f"$ {shown}", bold=True))
        say(
            f"  {counts['items']} items: {counts['admit']} admitted, "
            f"{counts['deny']} denied  {counts['by_reason']}"
        )
        reports.append(out / "report.html")
    say(
        "\nThe CC0-labelled copy of Ann's registered poem was denied: a licence in the "
        "metadata never overrides the registry."
    )
    say("Reports: " + ", ".join(str(r) for r in reports))
    say(f"\nDone. Explore with: consentry --home {home} work list")


def _demo_dataset(folder: Path, files: dict[str, Path]) -> Path:
    """A small mixed dataset: a folder of files and a Parquet table of texts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (folder / "files").mkdir(parents=True, exist_ok=True)
    for key in ("story", "cover", "poem", "unregistered", "diary"):
        (folder / "files" / files[key].name).write_bytes(files[key].read_bytes())
    rows = [
        (files["story"].read_text(encoding="utf-8"), None, "books.example"),
        (files["poem"].read_text(encoding="utf-8"), "CC0-1.0", "reupload.example"),
        ("A recipe for rye bread, shared freely.\n", "CC0-1.0", "commons.example"),
        ("An anonymous forum post with no licence.\n", None, "forum.example"),
        (files["essay"].read_text(encoding="utf-8"), None, "essays.example"),
    ]
    table = pa.table(
        {
            "text": [r[0] for r in rows],
            "license": [r[1] for r in rows],
            "source": [r[2] for r in rows],
        }
    )
    pq.write_table(table, folder / "texts.parquet")
    return folder
