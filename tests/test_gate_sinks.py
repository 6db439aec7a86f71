"""Writing the admitted subset back in the source's format (consentry.gate.sinks).

Every round trip re-opens the output with open_source and compares keys and content with the
admitted items of the input; JSONL lines and tar members must be byte-identical.
"""

from __future__ import annotations

import gzip
import os
import tarfile
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest

from consentry.errors import InvalidInputError
from consentry.gate.item import Item
from consentry.gate.sinks import ADMITTED_DIR, write_subset
from consentry.gate.sources import ColumnMap, Source, open_source
from test_gate_sources import (
    CSV_ROWS,
    JSONL_ROWS,
    make_csv,
    make_files_dir,
    make_hf,
    make_hf_dict,
    make_jsonl,
    make_parquet,
    make_shard,
    make_webdataset,
)


def admitted_items(source: Source, admitted: set[int]) -> list[tuple[str, bytes | None]]:
    return [(item.key, item.data) for item in source if item.ordinal in admitted]


def contents(source: Source) -> list[tuple[str, bytes | None]]:
    return [(item.key, item.data) for item in source]


def assert_clean(out: Path) -> None:
    """Only the finished directory is left: no partial one."""
    assert [path.name for path in out.iterdir()] == [ADMITTED_DIR]


# --- round trips ------------------------------------------------------------------------------


def test_files_round_trip(tmp_path: Path) -> None:
    source = open_source(make_files_dir(tmp_path / "ds"))
    written = write_subset(source, {1, 2}, tmp_path / "out")
    admitted = tmp_path / "out" / ADMITTED_DIR
    assert written == [admitted / "b.txt", admitted / "sub" / "red.png"]
    assert contents(open_source(admitted)) == admitted_items(source, {1, 2})
    assert_clean(tmp_path / "out")


def test_jsonl_round_trip_is_byte_identical(tmp_path: Path) -> None:
    path = make_jsonl(tmp_path / "d.jsonl")
    path.write_bytes(path.read_bytes() + b'{"id": "w5", "text": "no newline"}')
    source = open_source(path, columns=ColumnMap(key="id"))
    (written,) = write_subset(source, {0, 2, 4}, tmp_path / "out")
    assert written == tmp_path / "out" / ADMITTED_DIR / "d.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    assert written.read_bytes() == lines[0] + lines[2] + lines[4] + b"\n"
    reopened = open_source(written, columns=ColumnMap(key="id"))
    assert contents(reopened) == admitted_items(source, {0, 2, 4})


def test_jsonl_gz_round_trip_and_determinism(tmp_path: Path) -> None:
    source = open_source(make_jsonl(tmp_path / "d.jsonl.gz"))
    (first,) = write_subset(source, {1, 3}, tmp_path / "out1")
    (second,) = write_subset(source, {1, 3}, tmp_path / "out2")
    assert first.name == "d.jsonl.gz"
    assert first.read_bytes() == second.read_bytes()  # no timestamp in the gzip header
    lines = gzip.decompress(first.read_bytes()).splitlines(keepends=True)
    original = gzip.decompress(source.root.read_bytes()).splitlines(keepends=True)
    assert lines == [original[1], original[3]]
    assert [item.data for item in open_source(first)] == [
        JSONL_ROWS[1]["text"].encode(),
        JSONL_ROWS[3]["text"].encode(),
    ]


def test_csv_round_trip_keeps_header_bom_and_terminators(tmp_path: Path) -> None:
    path = make_csv(tmp_path / "d.csv", CSV_ROWS, bom=True)
    source = open_source(path, columns=ColumnMap(key="id"))
    (written,) = write_subset(source, {1, 2}, tmp_path / "out")
    raw = written.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbfid,text,licence\r\n")
    reopened = open_source(written, columns=ColumnMap(key="id"))
    assert contents(reopened) == admitted_items(source, {1, 2})
    assert [item.record for item in reopened] == [CSV_ROWS[2], CSV_ROWS[3]]


def test_csv_unix_line_endings_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(b"text,n\nalpha,1\nbeta,2\n")
    (written,) = write_subset(open_source(path), {1}, tmp_path / "out")
    assert written.read_bytes() == b"text,n\nbeta,2\n"


def test_parquet_round_trip_keeps_schema_and_order(tmp_path: Path) -> None:
    path = make_parquet(tmp_path / "d.parquet")
    source = open_source(path, columns=ColumnMap(key="id"))
    admitted = {0, 3, 4}  # spans row groups of two rows
    (written,) = write_subset(source, admitted, tmp_path / "out")
    assert pq.read_schema(written).equals(pq.read_schema(path), check_metadata=True)
    assert pq.ParquetFile(written).metadata.row_group(0).column(0).compression == "ZSTD"
    # One output row group per input row group (rows 0-1, 2-3, 4), each filtered to one row.
    assert pq.ParquetFile(written).metadata.num_row_groups == 3
    reopened = open_source(written, columns=ColumnMap(key="id"))
    assert contents(reopened) == admitted_items(source, admitted)
    assert pq.read_table(written).column("caption").to_pylist() == [
        "red",
        "red again",
        "green again",
    ]


def test_parquet_nothing_admitted_gives_an_empty_file_with_the_schema(tmp_path: Path) -> None:
    path = make_parquet(tmp_path / "d.parquet")
    (written,) = write_subset(open_source(path), set(), tmp_path / "out")
    assert pq.read_metadata(written).num_rows == 0
    assert pq.read_schema(written).equals(pq.read_schema(path))


def test_webdataset_round_trip_members_byte_identical(tmp_path: Path) -> None:
    root = make_webdataset(tmp_path / "wds")
    source = open_source(root)
    admitted = {0, 2}  # both from shard-000; shard-001 admits nothing
    written = write_subset(source, admitted, tmp_path / "out")
    out = tmp_path / "out" / ADMITTED_DIR
    assert written == [out / "shard-000.tar", out / "shard-001.tar"]
    with tarfile.open(out / "shard-000.tar") as archive:
        members = {m.name: archive.extractfile(m).read() for m in archive if m.isfile()}  # type: ignore[union-attr]
    with tarfile.open(root / "shard-000.tar") as archive:
        original = {m.name: archive.extractfile(m).read() for m in archive if m.isfile()}  # type: ignore[union-attr]
    wanted = ("s0.png", "s0.json", "s0.txt", "s2.txt")
    assert members == {name: original[name] for name in wanted}
    with tarfile.open(out / "shard-001.tar") as archive:
        assert archive.getmembers() == []
    again = write_subset(source, admitted, tmp_path / "again")
    assert [path.read_bytes() for path in again] == [path.read_bytes() for path in written]
    reopened = open_source(out)
    assert contents(reopened) == admitted_items(source, admitted)
    assert [item.metadata for item in reopened] == [
        item.metadata for item in source if item.ordinal in admitted
    ]


def test_webdataset_single_shard_round_trip(tmp_path: Path) -> None:
    shard = make_shard(tmp_path / "one.tar", [("a", {"txt": b"A"}), ("b", {"txt": b"B"})])
    source = open_source(shard)
    (written,) = write_subset(source, {1}, tmp_path / "out")
    assert written.name == "one.tar"
    assert contents(open_source(written)) == [("one/b", b"B")]


def test_hf_dataset_round_trip(tmp_path: Path) -> None:
    root = make_hf(tmp_path / "hf")
    before = sorted(path.name for path in root.iterdir())
    source = open_source(root)
    written = write_subset(source, {0, 2}, tmp_path / "out")
    out = tmp_path / "out" / ADMITTED_DIR
    assert out / "state.json" in written
    reopened = open_source(out)
    assert [item.data for item in reopened] == [
        item.data for item in source if item.ordinal in {0, 2}
    ]
    assert [item.metadata for item in reopened] == [
        item.metadata for item in source if item.ordinal in {0, 2}
    ]
    saved = datasets.load_from_disk(str(out))
    assert saved.features == datasets.load_from_disk(str(root)).features
    # select() must not have left an indices cache file in the input directory.
    assert sorted(path.name for path in root.iterdir()) == before


def test_hf_dataset_dict_round_trip(tmp_path: Path) -> None:
    source = open_source(make_hf_dict(tmp_path / "hf"), columns=ColumnMap(text="text"))
    admitted = {0, 2}  # test/0 and train/1
    write_subset(source, admitted, tmp_path / "out")
    out = tmp_path / "out" / ADMITTED_DIR
    assert (out / "dataset_dict.json").is_file()
    reopened = open_source(out, columns=ColumnMap(text="text"))
    assert [item.data for item in reopened] == [b"test caption 0", b"train caption 1"]
    assert [item.key for item in reopened] == ["test/0", "train/0"]  # rows renumber per split


# --- safety -----------------------------------------------------------------------------------


def test_existing_output_is_refused(tmp_path: Path) -> None:
    source = open_source(make_jsonl(tmp_path / "d.jsonl"))
    write_subset(source, {0}, tmp_path / "out")
    with pytest.raises(InvalidInputError, match="admitted: already exists"):
        write_subset(source, {1}, tmp_path / "out")


def test_output_inside_the_dataset_is_refused(tmp_path: Path) -> None:
    root = make_files_dir(tmp_path / "ds")
    with pytest.raises(InvalidInputError, match="must be outside the dataset"):
        write_subset(open_source(root), {0}, root / "out")
    assert not (root / "out").exists()


def test_an_unwritable_admitted_item_leaves_no_output(tmp_path: Path) -> None:
    root = make_webdataset(tmp_path / "wds")
    with (root / "shard-001.tar").open("r+b") as handle:
        handle.truncate(700)  # inside the first member's data
    source = open_source(root)
    broken = [item for item in source if item.error is not None]
    assert [item.key for item in broken] == ["shard-001/s0"]
    with pytest.raises(InvalidInputError, match=r"item 3 \(shard-001/s0\) cannot be written"):
        write_subset(source, {0, broken[0].ordinal}, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []  # the partial directory was removed


def test_error_items_are_simply_left_out(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"text": "a"}\nnot json\n{"text": "b"}\n')
    source = open_source(path)
    found: list[Item] = list(source)
    admitted = {item.ordinal for item in found if item.error is None}
    (written,) = write_subset(source, admitted, tmp_path / "out")
    assert written.read_bytes() == b'{"text": "a"}\n{"text": "b"}\n'


def test_files_subset_fsync_failure_leaves_no_admitted_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = open_source(make_files_dir(tmp_path / "ds"))
    real_fsync = os.fsync
    calls: list[int] = []

    def failing_fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 2:  # one of the files, while others are in flight
            raise OSError(5, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="Input/output error"):
        write_subset(source, {0, 1, 2, 3}, tmp_path / "out")
    assert not (tmp_path / "out" / ADMITTED_DIR).exists()
    assert list((tmp_path / "out").iterdir()) == []  # the partial directory is gone too


def test_files_subset_fsyncs_every_written_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = open_source(make_files_dir(tmp_path / "ds"))
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    written = write_subset(source, {0, 1, 2, 3}, tmp_path / "out")
    names = {Path(p).name for p in synced}
    assert {p.name for p in written} <= names
