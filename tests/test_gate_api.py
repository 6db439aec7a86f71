"""The gate's Python API, exactly as docs/gate.md shows it, and the pinned public names.

The registry is built with the real CLI (see ``test_gate_run.build_registry``) and exported as
a snapshot; everything here then runs offline against that snapshot.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import datasets
import pytest

import consentry
from consentry import (
    Basis,
    CollectionLicence,
    Gate,
    GateDecision,
    InvalidInputError,
    Item,
    Outcome,
    Policy,
    Purpose,
    Reason,
    VerificationError,
)
from consentry.gate.policy import load_policy
from consentry.gate.snapshot import SnapshotCheckError
from consentry.ledger.note import generate_signer, parse_verifier_key
from test_gate_run import PURPOSE, Registry, build_registry, policy_toml


@pytest.fixture(autouse=True)
def _no_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONSENTRY_DATABASE_URL", raising=False)
    monkeypatch.delenv("CONSENTRY_HOME", raising=False)


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    return build_registry(tmp_path_factory.mktemp("api-registry"))


@pytest.fixture(scope="module")
def policy_file(reg: Registry, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("policy") / "policy.toml"
    path.write_text(policy_toml(reg.lab, ["grant", "open-licence"]), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def gate(reg: Registry, policy_file: Path) -> Gate:
    return Gate.from_snapshot(reg.snapshot, policy=policy_file, operator_key=reg.operator_pub)


def reasons(result: GateDecision) -> list[str]:
    return [r.value for r in result.decision.reasons]


# --- the docs example, as written -------------------------------------------------------------


def test_the_docs_example_runs_as_written(
    reg: Registry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """docs/gate.md, "Python API": same file names, same calls, in the working directory."""
    shutil.copytree(reg.snapshot, tmp_path / "registry.snapshot")
    shutil.copyfile(reg.operator_pub, tmp_path / "operator.pub")  # published by the operator
    (tmp_path / "policy.toml").write_text(
        f'licensee = "{reg.lab}"\npurpose = "{PURPOSE}"\n', encoding="utf-8"
    )
    shutil.copyfile(reg.files["cover"], tmp_path / "photo.jpg")
    texts = [reg.text("story"), reg.text("essay"), "Not registered at all.\n", reg.text("story")]
    datasets.disable_progress_bars()
    try:
        datasets.Dataset.from_dict(
            {"text": texts, "license": ["CC-BY-4.0", "CC0-1.0", "CC0-1.0", None]}
        ).save_to_disk(str(tmp_path / "my-dataset"))
        monkeypatch.chdir(tmp_path)

        # --- from docs/gate.md ---
        from pathlib import Path

        from consentry import Gate

        gate = Gate.from_snapshot(
            "registry.snapshot", policy="policy.toml", operator_key="operator.pub"
        )
        result = gate.decide(Path("photo.jpg").read_bytes())
        print(result.decision.outcome, [r.value for r in result.decision.reasons])

        # Hugging Face datasets: a batched predicate
        from datasets import load_from_disk

        ds = load_from_disk("my-dataset")
        kept = ds.filter(gate.predicate(column="text", metadata_columns=["license"]), batched=True)
        # --- end ---
    finally:
        datasets.enable_progress_bars()

    assert capsys.readouterr().out == "deny ['reserved']\n"  # BO reserved the cover
    assert result.decision.outcome is Outcome.DENY
    assert [m.work_id for m in result.matches] == [reg.works["cover"]]
    assert kept.num_rows == 2
    assert kept["text"] == [reg.text("story"), reg.text("story")]
    assert kept["license"] == ["CC-BY-4.0", None]
    assert ds.num_rows == 4  # filter returns a new dataset; the input is untouched


# --- from_snapshot and its policy forms -------------------------------------------------------


def test_policy_as_toml_path_dict_or_policy_object_decide_alike(
    reg: Registry, policy_file: Path
) -> None:
    as_dict = {
        "licensee": reg.lab,
        "purpose": PURPOSE,
        "bases": ["grant", "open-licence"],
        "open_licences": ["CC0-1.0", "CC-BY-4.0"],
        "fields": {"license": "licence_id", "source": "origin"},
    }
    as_policy = load_policy(policy_file)
    key = reg.operator_pub
    vkey = key.read_text(encoding="utf-8").strip()
    gates = [
        Gate.from_snapshot(reg.snapshot, policy=policy_file, operator_key=key),
        Gate.from_snapshot(str(reg.snapshot), policy=str(policy_file), operator_key=str(key)),
        Gate.from_snapshot(reg.snapshot, policy=as_dict, operator_key=vkey),
        Gate.from_snapshot(reg.snapshot, policy=as_policy, operator_key=parse_verifier_key(vkey)),
    ]
    assert gates[3].policy is as_policy
    for g in gates:
        assert g.policy.licensee == reg.lab
        assert g.policy.purpose is Purpose(PURPOSE)
        assert g.policy.bases == frozenset({Basis.GRANT, Basis.OPEN_LICENCE})
        assert g.snapshot.id == gates[0].snapshot.id
    cases = [
        (reg.data("story"), {}),
        (reg.data("poem"), {"licence_id": "CC0-1.0"}),
        (b"unregistered bytes", {"licence_id": "CC0-1.0"}),
        (b"unregistered bytes", {"licence_id": "MIT"}),
    ]
    seen = [[reasons(g.decide(data, metadata=meta)) for data, meta in cases] for g in gates]
    assert (
        seen
        == [
            [
                ["grant-in-force"],
                ["grant-pending-agreement"],
                ["basis-open-licence"],
                ["no-matching-work"],
            ]
        ]
        * 4
    )


def test_a_policy_object_built_in_python(reg: Registry) -> None:
    policy = Policy(
        licensee=reg.lab,
        purpose=Purpose(PURPOSE),
        at=datetime.now(UTC),
        bases=frozenset({Basis.GRANT, Basis.COLLECTION_LICENCE}),
        collection_licences=(CollectionLicence("C-1", "archive.example"),),
    )
    gate = Gate.from_snapshot(reg.snapshot, policy=policy, operator_key=reg.operator_pub)
    item = Item("x", 0, b"an unregistered text", "text", {"source": "archive.example"})
    result = gate.decide(item)
    assert reasons(result) == ["basis-collection-licence"]
    assert result.basis is Basis.COLLECTION_LICENCE
    assert result.source == "archive.example"


def test_from_snapshot_refuses_bad_input(reg: Registry, tmp_path: Path) -> None:
    good = {"licensee": reg.lab, "purpose": PURPOSE}
    key = reg.operator_pub
    with pytest.raises(InvalidInputError, match="unknown key 'open_licenses'"):
        Gate.from_snapshot(
            reg.snapshot, policy={**good, "open_licenses": ["CC0-1.0"]}, operator_key=key
        )
    with pytest.raises(InvalidInputError, match="licensee P404 is not a party"):
        Gate.from_snapshot(reg.snapshot, policy={**good, "licensee": "P404"}, operator_key=key)
    with pytest.raises(InvalidInputError, match="not found"):
        Gate.from_snapshot(reg.snapshot, policy=tmp_path / "missing.toml", operator_key=key)
    tampered = tmp_path / "tampered.snapshot"
    shutil.copytree(reg.snapshot, tampered)
    raw = bytearray((tampered / "registry.json").read_bytes())
    raw[-2] ^= 0x20
    (tampered / "registry.json").write_bytes(bytes(raw))
    with pytest.raises(VerificationError, match=r"check 4 .*content hash of registry\.json"):
        Gate.from_snapshot(tampered, policy=good, operator_key=key)
    # verify=False is the escape hatch for workers of an already verified snapshot
    with pytest.raises(VerificationError, match="malformed"):
        Gate.from_snapshot(tampered, policy=good, verify=False)


def test_from_snapshot_needs_the_operator_key_pinned(reg: Registry, tmp_path: Path) -> None:
    good = {"licensee": reg.lab, "purpose": PURPOSE}
    with pytest.raises(InvalidInputError, match="no operator key pinned"):
        Gate.from_snapshot(reg.snapshot, policy=good)
    trusted = Gate.from_snapshot(reg.snapshot, policy=good, trust_snapshot_key=True)
    assert trusted.snapshot.log is not None
    assert trusted.snapshot.log.key_pinned is False
    pinned = Gate.from_snapshot(reg.snapshot, policy=good, operator_key=reg.operator_pub)
    assert pinned.snapshot.log is not None
    assert pinned.snapshot.log.key_pinned is True
    assert pinned.snapshot.log.verifier == trusted.snapshot.log.verifier
    _, stranger = generate_signer(pinned.snapshot.log.origin)  # same name, another key
    with pytest.raises(SnapshotCheckError, match="check 2 ") as caught:
        Gate.from_snapshot(reg.snapshot, policy=good, operator_key=stranger)
    assert (caught.value.number, caught.value.check) == (2, "signature")
    with pytest.raises(InvalidInputError, match="neither a verifier key nor a readable file"):
        Gate.from_snapshot(reg.snapshot, policy=good, operator_key=tmp_path / "nope.pub")


# --- decide -----------------------------------------------------------------------------------


def test_decide_bytes(gate: Gate, reg: Registry) -> None:
    result = gate.decide(reg.data("story"))
    assert isinstance(result, GateDecision)
    assert result.admitted
    assert result.decision.outcome is Outcome.ADMIT
    assert result.decision.reasons == (Reason.GRANT_IN_FORCE,)
    assert result.basis is Basis.GRANT
    assert [(m.work_id, m.score, m.stage) for m in result.matches] == [
        (reg.works["story"], 1.0, "exact")
    ]
    assert result.record()["grant_ids"] == [reg.grants["story"]]
    assert result.error is None

    cover = gate.decide(reg.data("cover"))
    assert reasons(cover) == ["reserved"]
    assert not cover.admitted
    assert cover.basis is None


def test_decide_text_string(gate: Gate, reg: Registry) -> None:
    assert reasons(gate.decide(reg.text("story"))) == ["grant-in-force"]
    assert reasons(gate.decide(reg.text("poem"))) == ["grant-pending-agreement"]
    assert reasons(gate.decide(reg.text("lyrics"))) == ["grant-revoked"]
    assert reasons(gate.decide(reg.text("essay"))) == ["no-grant"]
    assert reasons(gate.decide("Ten tips for better sourdough.\n")) == ["no-matching-work"]
    # A string is UTF-8 text: the same as the file's bytes
    assert gate.decide(reg.text("story")).record() == gate.decide(reg.data("story")).record()


def test_decide_metadata_never_launders_a_registered_work(gate: Gate, reg: Registry) -> None:
    open_licence = {"licence_id": "CC0-1.0"}
    unregistered = gate.decide("An unregistered essay.\n", metadata=open_licence)
    assert unregistered.admitted
    assert reasons(unregistered) == ["basis-open-licence"]
    assert unregistered.basis is Basis.OPEN_LICENCE
    for name, why in (("essay", "no-grant"), ("lyrics", "grant-revoked"), ("cover", "reserved")):
        result = gate.decide(reg.data(name), metadata=open_licence)
        assert reasons(result) == [why], name
        assert result.basis is None


def test_decide_item(gate: Gate, reg: Registry) -> None:
    item = Item(
        key="shard-7/000042",
        ordinal=42,
        data=reg.data("cover"),
        media_type="image",
        metadata={"licence_id": "CC-BY-4.0", "origin": "reupload.example"},
    )
    result = gate.decide(item)
    assert (result.key, result.ordinal) == ("shard-7/000042", 42)
    assert reasons(result) == ["reserved"]
    assert result.source == "reupload.example"
    record = result.record()
    assert record["key"] == "shard-7/000042"
    assert record["work_ids"] == [reg.works["cover"]]
    assert record["source"] == "reupload.example"

    broken = Item("bad", 1, error="truncated tar member", metadata={"licence_id": "CC0-1.0"})
    assert reasons(gate.decide(broken)) == ["unreadable"]
    assert gate.decide(broken).error == "truncated tar member"
    assert reasons(gate.decide(Item("empty", 2, b"", metadata={"licence_id": "CC0-1.0"}))) == [
        "unreadable"
    ]
    assert reasons(gate.decide(b"")) == ["unreadable"]


def test_decide_batch_keeps_keys_and_order(gate: Gate, reg: Registry) -> None:
    names = ["essay", "story", "poem", "cover", "diary"]
    items = [
        Item(f"k{i}", i, reg.data(name), metadata={"origin": f"site-{i}"})
        for i, name in enumerate(names)
    ]
    results = gate.decide_batch(items)
    assert [(r.key, r.ordinal) for r in results] == [(f"k{i}", i) for i in range(len(names))]
    assert [reasons(r) for r in results] == [
        ["no-grant"],
        ["grant-in-force"],
        ["grant-pending-agreement"],
        ["reserved"],
        ["no-matching-work"],
    ]
    assert [r.source for r in results] == [f"site-{i}" for i in range(len(names))]
    assert gate.decide_batch([]) == []
    # a generator is fine too
    assert len(gate.decide_batch(item for item in items)) == len(items)


# --- predicate in a real datasets pipeline ----------------------------------------------------


def test_predicate_in_dataset_filter_with_metadata(gate: Gate, reg: Registry) -> None:
    rows = {
        "text": [
            reg.text("story"),
            reg.text("essay"),
            "Unregistered but CC0.\n",
            "Unregistered, MIT.\n",
            reg.text("lyrics"),
            None,
        ],
        "licence_id": ["proprietary", "CC0-1.0", "CC0-1.0", "MIT", "CC0-1.0", "CC0-1.0"],
        "note": ["a", "b", "c", "d", "e", "f"],
    }
    ds = datasets.Dataset.from_dict(rows)
    keep = gate.predicate(column="text", metadata_columns=["licence_id"])
    kept = ds.filter(keep, batched=True, batch_size=4)
    assert kept["note"] == ["a", "c"]
    # without the metadata column, the open-licence basis cannot apply
    plain = ds.filter(gate.predicate(column="text"), batched=True, batch_size=4)
    assert plain["note"] == ["a"]
    # the predicate itself, on a plain batch
    assert keep({"text": [reg.text("story"), 7], "licence_id": ["CC0-1.0", "CC0-1.0"]}) == [
        True,
        False,
    ]


def test_predicate_on_image_bytes_and_hf_image_dicts(reg: Registry, tmp_path: Path) -> None:
    policy = {"licensee": reg.lab, "purpose": PURPOSE}
    gate = Gate.from_snapshot(reg.snapshot, policy=policy, operator_key=reg.operator_pub)
    cover = reg.data("cover")
    features = datasets.Features(
        {"image": datasets.Image(decode=False), "n": datasets.Value("int32")}
    )
    ds = datasets.Dataset.from_dict(
        {"image": [{"bytes": cover, "path": None}, {"bytes": cover, "path": None}], "n": [1, 2]},
        features=features,
    )
    # BO reserved the cover: a grant in force does not help
    assert ds.filter(gate.predicate(column="image"), batched=True).num_rows == 0
    keep = gate.predicate(column="image", media_type="image")
    assert keep({"image": [cover, {"bytes": cover}, None]}) == [False, False, False]
    # any column name works, and raw bytes are sniffed: the story's file bytes are text
    assert gate.predicate(column="blob")({"blob": [reg.data("story")]}) == [True]


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(b"\x89PNG\r\n\x1a\n but then nothing an image decoder can read", id="png"),
        pytest.param(b"\xff\xd8\xff\xe0 not a jpeg after all", id="jpeg"),
        pytest.param("truncated-cover", id="truncated-registered-jpeg"),
    ],
)
def test_a_corrupt_image_is_unreadable_whatever_the_metadata(
    gate: Gate, reg: Registry, corrupt: bytes | str
) -> None:
    """docs/gate.md: a corrupt image becomes a deny with reason ``unreadable``."""
    data = reg.data("cover")[:1500] if corrupt == "truncated-cover" else corrupt
    assert isinstance(data, bytes)
    result = gate.decide(Item("img", 0, data, "image", {"licence_id": "CC0-1.0"}))
    assert not result.admitted, "a corrupt image was admitted on its CC0 label"
    assert reasons(result) == ["unreadable"]


# --- the public API is pinned -----------------------------------------------------------------

PUBLIC_API = [
    "Basis",
    "CollectionLicence",
    "ConfigurationError",
    "ConflictError",
    "ConsentryError",
    "DatabaseLockedError",
    "Decision",
    "Evidence",
    "Gate",
    "GateDecision",
    "InvalidInputError",
    "Item",
    "ItemFacts",
    "MemoryRegistryView",
    "NotFoundError",
    "Outcome",
    "PermissionDeniedError",
    "Policy",
    "Purpose",
    "Reason",
    "SchemaVersionError",
    "Snapshot",
    "StoreError",
    "UnreadableInputError",
    "VerificationError",
    "WorkMatch",
    "__version__",
    "decide",
    "decide_with_policy",
]


def test_public_api_is_pinned() -> None:
    assert consentry.__all__ == PUBLIC_API
    assert PUBLIC_API == sorted(PUBLIC_API)
    for name in PUBLIC_API:
        assert getattr(consentry, name) is not None, name
    assert consentry.Gate.__module__ == "consentry.gate.engine"
    assert consentry.Item.__module__ == "consentry.gate.item"
    assert consentry.Snapshot.__module__ == "consentry.gate.snapshot"
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = consentry.Nope
