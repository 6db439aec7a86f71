"""Deferred fingerprints: computed on first read only, otherwise plain fingerprints."""

from __future__ import annotations

import pickle

import pytest
from PIL import Image

from consentry.fingerprint.base import Fingerprint
from consentry.fingerprint.deferred import Deferred, DeferredFingerprint
from consentry.fingerprint.image import (
    KIND_LOCAL,
    KIND_WORKING_COPY,
    ROTATIONS,
    ImageFingerprinter,
)
from consentry.index.hamming import HammingIndex
from test_match_cli import jpeg, picture


def counting_source(values: dict[str, str]) -> tuple[Deferred[dict[str, str]], list[int]]:
    calls: list[int] = []

    def compute() -> dict[str, str]:
        calls.append(1)
        return values

    return Deferred(compute), calls


def test_value_is_computed_once_on_first_read_and_shared() -> None:
    source, calls = counting_source({"a": "0f", "b": "f0"})
    first = DeferredFingerprint("pdq", "full~x", source, "a")
    second = DeferredFingerprint("pdq", "full~y", source, "b")
    assert (first.kind, first.region) == ("pdq", "full~x")
    assert calls == []
    assert not first.computed
    assert first.value == "0f"
    assert second.value == "f0"
    assert first.value == "0f"
    assert calls == [1]
    assert second.computed


def test_behaves_as_a_plain_fingerprint() -> None:
    source, _ = counting_source({"k": "abcd"})
    lazy = DeferredFingerprint("orb1", "all", source, "k")
    plain = Fingerprint("orb1", "abcd", "all")
    assert lazy == plain
    assert plain == lazy
    assert lazy != Fingerprint("orb1", "abce", "all")
    assert hash(lazy) == hash(plain)
    assert {lazy, plain} == {plain}
    assert isinstance(lazy, Fingerprint)
    restored = pickle.loads(pickle.dumps(lazy))  # noqa: S301 (our own bytes, round trip)
    assert type(restored) is Fingerprint
    assert restored == plain


def test_a_failing_computation_raises_on_read() -> None:
    def compute() -> dict[str, str]:
        raise ValueError("boom")

    lazy = DeferredFingerprint("pdq", "full", Deferred(compute), "k")
    with pytest.raises(ValueError, match="boom"):
        _ = lazy.value


def deferred_of(prints: list[Fingerprint]) -> list[DeferredFingerprint]:
    return [f for f in prints if isinstance(f, DeferredFingerprint)]


def test_image_fingerprinter_defers_rotations_and_local_features() -> None:
    prints = ImageFingerprinter().fingerprint(jpeg(picture(11)), "image")
    lazy = deferred_of(prints)
    regions = {(f.kind, f.region) for f in lazy}
    assert (KIND_LOCAL, "all") in regions
    assert len(regions) == 1 + 2 * len(ROTATIONS)
    assert all("~rotate" in r for k, r in regions if k != KIND_LOCAL)
    assert not any(f.computed for f in lazy)
    # Reading gives the same values as a fresh computation (pure, deterministic).
    again = ImageFingerprinter().fingerprint(jpeg(picture(11)), "image")
    assert [(f.kind, f.region, f.value) for f in prints] == [
        (f.kind, f.region, f.value) for f in again
    ]


def test_matching_computes_deferred_values_only_for_items_the_plain_hashes_miss() -> None:
    fp = ImageFingerprinter()
    index = HammingIndex()
    for n in range(3):
        index.add(f"W{n + 1}", fp.fingerprint(jpeg(picture(n), 95), "image"), n + 1)
    # A re-encoded copy: the plain whole-picture hashes match; nothing deferred is computed.
    copy = fp.query_fingerprint(jpeg(picture(1), 60), "image")
    assert any(f.kind == KIND_WORKING_COPY for f in deferred_of(copy))
    assert index.match(copy)[0].work_id == "W2"
    assert not any(f.computed for f in deferred_of(copy))
    # A turned copy: the rotation variants are computed (and match), ORB is not needed.
    turned = picture(1).rotate(3.0, Image.Resampling.BILINEAR, fillcolor=(0, 0, 0))
    item = fp.query_fingerprint(jpeg(turned), "image")
    found = index.match(item)
    assert found[0].work_id == "W2"
    assert "item_rotation_degrees" in found[0].evidence
    local = (KIND_LOCAL, KIND_WORKING_COPY)
    assert all(f.computed == (f.kind not in local) for f in deferred_of(item))
    # An unregistered picture goes through every stage; its pixels are read only if a
    # candidate's keypoints agree well enough to be compared, which none does here.
    other = fp.query_fingerprint(jpeg(picture(40)), "image")
    assert index.match(other) == []
    assert all(f.computed == (f.kind != KIND_WORKING_COPY) for f in deferred_of(other))
    # A crop reaches the aligned comparison: the working copy is read.
    w, h = picture(1).size
    cropped = fp.query_fingerprint(jpeg(picture(1).crop((0, 0, w * 7 // 10, h * 7 // 10))), "image")
    assert index.match(cropped)[0].stage == "local"
    assert all(f.computed for f in deferred_of(cropped))
