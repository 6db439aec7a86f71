"""Registration reports the registered works a new one resembles (registry/registration.py)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from consentry.cli import main
from consentry.domain import PartyKind, VerificationLevel
from consentry.registry.registration import RegisterOutcome, register_paths
from consentry.registry.service import HolderSpec, RegistryService
from consentry.store.database import Database
from test_match_cli import picture

STORY = " ".join(
    f"{w}{i % 97}"
    for i, w in enumerate(
        "the keeper of the light walked down to the harbour where the boats lay still".split() * 40
    )
)


def _parties(db: Database, count: int) -> list[str]:
    with db.write() as session:
        service = RegistryService(session)
        return [service.add_party(f"P{n}", None, PartyKind.PERSON).id for n in range(count)]


def _register(
    db: Database, party: str, *paths: Path, similar: bool = True
) -> list[RegisterOutcome]:
    outcomes = list(register_paths(db, paths, [HolderSpec(party)], similar=similar))
    assert all(o.error is None for o in outcomes), [o.error for o in outcomes]
    return outcomes


def _jpeg(path: Path, image: Image.Image, quality: int = 90) -> Path:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=quality)
    path.write_bytes(buf.getvalue())
    return path


def test_a_copy_registered_by_someone_else_is_reported_with_the_stage(
    db: Database, tmp_path: Path
) -> None:
    ann, bo = _parties(db, 2)
    original = _jpeg(tmp_path / "original.jpg", picture(7))
    (first,) = _register(db, ann, original)
    assert first.similar == ()  # nothing registered before it
    smaller = picture(7).resize((360, 270))
    (copy,) = _register(db, bo, _jpeg(tmp_path / "copy.jpg", smaller, quality=70))
    assert copy.work is not None
    assert first.work is not None
    assert [m.work_id for m in copy.similar] == [first.work.id]
    assert copy.similar[0].stage in {"pdq", "local"}
    # An unrelated picture resembles nothing.
    (other,) = _register(db, bo, _jpeg(tmp_path / "other.jpg", picture(8)))
    assert other.similar == ()
    # Switched off, nothing is compared.
    (again,) = _register(db, bo, _jpeg(tmp_path / "again.jpg", smaller, quality=50), similar=False)
    assert again.similar == ()


def test_a_text_containing_a_registered_one_is_reported(db: Database, tmp_path: Path) -> None:
    ann, bo = _parties(db, 2)
    story = tmp_path / "story.txt"
    story.write_text(STORY)
    (first,) = _register(db, ann, story)
    anthology = tmp_path / "anthology.txt"
    words = STORY.split(" ")
    anthology.write_text("An introduction of a few words.\n\n" + " ".join(words[100:300]))
    (second,) = _register(db, bo, anthology)
    assert first.work is not None
    assert [(m.work_id, m.stage) for m in second.similar] == [(first.work.id, "text")]
    assert second.similar[0].evidence["matched_words"] >= 150


def test_same_bytes_are_a_dispute_not_a_resemblance_and_void_works_are_left_out(
    db: Database, tmp_path: Path
) -> None:
    ann, bo, cy = _parties(db, 3)
    original = _jpeg(tmp_path / "original.jpg", picture(9))
    (first,) = _register(db, ann, original)
    (same,) = _register(db, bo, original)
    assert len(same.disputes) == 1
    assert same.similar == ()  # the dispute says it already
    assert first.work is not None
    assert same.work is not None
    with db.write() as session:
        service = RegistryService(session)
        registrar = service.add_party("Operator", None, PartyKind.ORGANISATION)
        service.verify_party(registrar.id, VerificationLevel.OPERATOR, registrar=True)
        service.resolve_dispute(same.disputes[0].id, registrar.id, void_work=same.work.id, note="")
    copy = _jpeg(tmp_path / "copy.jpg", picture(9).resize((400, 300)), quality=60)
    (third,) = _register(db, cy, copy)
    assert [m.work_id for m in third.similar] == [first.work.id]  # not the voided one


def test_register_prints_the_resemblance(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = ["--home", str(tmp_path / "home")]
    assert main([*home, "init"]) == 0
    ids = []
    for name in ("Ann", "Bo"):
        capsys.readouterr()
        assert main([*home, "party", "add", "--name", name, "--json"]) == 0
        ids.append(json.loads(capsys.readouterr().out)["id"])
    original = _jpeg(tmp_path / "original.jpg", picture(11))
    assert main([*home, "work", "register", str(original), "--holder", ids[0]]) == 0
    copy = _jpeg(tmp_path / "copy.jpg", picture(11).resize((300, 225)), quality=60)
    capsys.readouterr()
    assert main([*home, "work", "register", str(copy), "--holder", ids[1], "--json"]) == 0
    out = capsys.readouterr()
    record = json.loads(out.out)
    assert [m["work_id"] for m in record["similar"]] == ["W1"]
    assert {"score", "stage"} <= set(record["similar"][0])
    assert f"{record['work_id']}: resembles W1 (" in out.err
    assert f"consentry dispute open W1 {record['work_id']}" in out.err
    capsys.readouterr()
    args = [*home, "work", "register", str(copy), "--holder", ids[0], "--no-similar", "--json"]
    assert main(args) == 0
    assert "similar" not in json.loads(capsys.readouterr().out)
