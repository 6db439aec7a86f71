"""Dataset sources (consentry.gate.sources) on small real fixtures of every supported format.

The builders at the top are reused by tests/test_gate_sinks.py; each makes a real file the way
the format's own tools would (Pillow PNGs, pyarrow Parquet, tarfile shards, datasets
save_to_disk), so the sources are tested against what dataset builders actually have.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
import pickle
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from consentry.errors import InvalidInputError, UnreadableInputError
from consentry.gate.item import Item
from consentry.gate.sources import (
    FORMATS,
    ColumnMap,
    Source,
    TarRecord,
    detect_format,
    open_source,
)

# --- builders (also used by test_gate_sinks) --------------------------------------------------


def png_bytes(colour: tuple[int, int, int], size: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()


RED = png_bytes((255, 0, 0))
GREEN = png_bytes((0, 255, 0))
BLUE = png_bytes((0, 0, 255))


def make_files_dir(root: Path) -> Path:
    """A nested directory with text, a PNG, hidden files and a symlinked directory."""
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "b.txt").write_text("bee\n")
    (root / "a.txt").write_text("ay\n")
    (root / "sub" / "red.png").write_bytes(RED)
    (root / "sub" / "deeper" / "c.txt").write_text("sea\n")
    (root / ".hidden.txt").write_text("skip me")
    (root / ".git" / "config").write_text("skip me too")
    (root / "link").symlink_to(root / "sub", target_is_directory=True)
    return root


FILES_KEYS = ["a.txt", "b.txt", "sub/red.png", "sub/deeper/c.txt"]

JSONL_ROWS: list[dict[str, Any]] = [
    {"id": "w1", "text": "The first work.", "licence": "cc-by"},
    {"id": "w2", "text": "The second work.", "licence": "none", "url": "https://example.org/2"},
    {"id": "w3", "text": "The third work.", "licence": "cc0"},
    {"id": "w4", "text": "The fourth work.", "licence": "cc-by"},
]


def make_jsonl(path: Path, rows: Sequence[dict[str, Any]] = JSONL_ROWS) -> Path:
    lines = [json.dumps(row).encode() + b"\n" for row in rows]
    data = b"".join(lines)
    path.write_bytes(gzip.compress(data, mtime=0) if path.name.endswith(".gz") else data)
    return path


def make_csv(path: Path, rows: Sequence[Sequence[str]], *, bom: bool = False) -> Path:
    with path.open("w", encoding="utf-8-sig" if bom else "utf-8", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return path


CSV_ROWS = [
    ["id", "text", "licence"],
    ["c1", "plain text", "cc-by"],
    ["c2", "a field, with a comma\nand a newline", "cc0"],
    ["c3", "caf\u00e9 \u2603", "none"],
]


def make_parquet(path: Path, *, row_group_size: int = 2) -> Path:
    table = pa.table(
        {
            "id": pa.array([10, 11, 12, 13, 14], pa.int64()),
            "image": pa.array([RED, GREEN, BLUE, RED, GREEN], pa.binary()),
            "caption": pa.array(["red", "green", "blue", "red again", "green again"]),
        }
    )
    pq.write_table(table, path, row_group_size=row_group_size, compression="zstd")
    return path


def tar_member(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 1_700_000_000
    archive.addfile(info, io.BytesIO(data))


def make_shard(path: Path, samples: Sequence[tuple[str, dict[str, bytes]]]) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as archive:
        for stem, members in samples:
            for ext, data in members.items():
                tar_member(archive, f"{stem}.{ext}", data)
    return path


def make_webdataset(root: Path) -> Path:
    root.mkdir()
    make_shard(
        root / "shard-000.tar",
        [
            ("s0", {"png": RED, "json": b'{"licence": "cc-by", "n": 0}', "txt": b"a red square"}),
            ("s1", {"jpg": GREEN, "cls": b"3"}),
            ("s2", {"txt": "just text \u2603".encode()}),
        ],
    )
    make_shard(
        root / "shard-001.tar",
        [
            ("s0", {"png": BLUE, "json": b'{"licence": "cc0"}'}),
            ("s1", {"png": RED}),
        ],
    )
    return root


WDS_KEYS = ["shard-000/s0", "shard-000/s1", "shard-000/s2", "shard-001/s0", "shard-001/s1"]

HF_FEATURES = datasets.Features(
    {
        "text": datasets.Value("string"),
        "image": datasets.Image(),
        "licence": datasets.Value("string"),
    }
)


def hf_rows(colours: Sequence[bytes], prefix: str) -> dict[str, list[Any]]:
    return {
        "text": [f"{prefix} caption {i}" for i in range(len(colours))],
        "image": [{"bytes": data, "path": None} for data in colours],
        "licence": ["cc-by"] * len(colours),
    }


def make_hf(path: Path) -> Path:
    dataset = datasets.Dataset.from_dict(hf_rows([RED, GREEN, BLUE], "hf"), features=HF_FEATURES)
    _save(dataset, path)
    return path


def make_hf_dict(path: Path) -> Path:
    train = datasets.Dataset.from_dict(hf_rows([RED, GREEN], "train"), features=HF_FEATURES)
    test = datasets.Dataset.from_dict(hf_rows([BLUE], "test"), features=HF_FEATURES)
    _save(datasets.DatasetDict({"train": train, "test": test}), path)
    return path


def _save(dataset: Any, path: Path) -> None:
    datasets.disable_progress_bars()
    try:
        dataset.save_to_disk(str(path))
    finally:
        datasets.enable_progress_bars()


def items(source: Source) -> list[Item]:
    return list(source)


def keys(source: Source) -> list[str]:
    return [item.key for item in source]


def assert_well_formed(found: list[Item]) -> None:
    assert [item.ordinal for item in found] == list(range(len(found)))
    assert len({item.key for item in found}) == len(found)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- format detection and opening -------------------------------------------------------------


def test_detect_format_by_shape_and_name(tmp_path: Path) -> None:
    assert detect_format(make_files_dir(tmp_path / "files")) == "files"
    assert detect_format(make_hf(tmp_path / "hf")) == "hf"
    assert detect_format(make_hf_dict(tmp_path / "hfdict")) == "hf"
    assert detect_format(make_webdataset(tmp_path / "wds")) == "webdataset"
    assert detect_format(tmp_path / "wds" / "shard-000.tar") == "webdataset"
    assert detect_format(make_jsonl(tmp_path / "d.jsonl")) == "jsonl"
    assert detect_format(make_jsonl(tmp_path / "d.jsonl.gz")) == "jsonl"
    assert detect_format(make_csv(tmp_path / "d.csv", CSV_ROWS)) == "csv"
    assert detect_format(make_parquet(tmp_path / "d.parquet")) == "parquet"


def test_unknown_format_lists_the_supported_ones(tmp_path: Path) -> None:
    odd = tmp_path / "data.xlsx"
    odd.write_bytes(b"PK\x03\x04")
    with pytest.raises(InvalidInputError, match=r"data\.xlsx: unknown dataset format.*jsonl"):
        open_source(odd)
    with pytest.raises(InvalidInputError, match="unknown dataset format 'arrow'"):
        open_source(tmp_path, format="arrow")


def test_missing_and_empty_paths_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UnreadableInputError, match="nope: no such file or directory"):
        open_source(tmp_path / "nope")
    (tmp_path / "empty" / "only-dirs").mkdir(parents=True)
    (tmp_path / "empty" / ".DS_Store").write_bytes(b"x")
    with pytest.raises(InvalidInputError, match="empty: empty directory, nothing to gate"):
        open_source(tmp_path / "empty")


def test_explicit_format_must_fit_the_path(tmp_path: Path) -> None:
    data = make_jsonl(tmp_path / "d.jsonl")
    with pytest.raises(InvalidInputError, match="format 'files' needs a directory"):
        open_source(data, format="files")
    with pytest.raises(InvalidInputError, match="format 'csv' needs a file"):
        open_source(make_files_dir(tmp_path / "files"), format="csv")
    # A saved HF dataset can still be gated file by file when asked for explicitly.
    assert open_source(make_hf(tmp_path / "hf"), format="files").format == "files"


def test_column_options_are_refused_for_non_tables(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="column options apply to tables"):
        open_source(make_files_dir(tmp_path / "f"), columns=ColumnMap(text="text"))
    assert open_source(make_files_dir(tmp_path / "g"), columns=ColumnMap()).format == "files"


def test_formats_constant() -> None:
    assert FORMATS == ("files", "jsonl", "csv", "parquet", "webdataset", "hf")


# --- files ------------------------------------------------------------------------------------


def test_files_order_keys_and_content(tmp_path: Path) -> None:
    root = make_files_dir(tmp_path / "ds")
    source = open_source(root)
    found = items(source)
    assert_well_formed(found)
    # Sorted walk: a directory's files, then its subdirectories; hidden and symlinked skipped.
    assert [item.key for item in found] == FILES_KEYS
    assert keys(source) == FILES_KEYS  # a second pass gives the same order
    by_key = {item.key: item for item in found}
    assert by_key["sub/red.png"].data == RED
    assert by_key["sub/red.png"].media_type == "image"
    assert by_key["a.txt"].data == b"ay\n"
    assert by_key["a.txt"].media_type == "text"
    assert all(item.error is None for item in found)
    assert source.count() == 4


def test_files_identity_hashes_every_file(tmp_path: Path) -> None:
    root = make_files_dir(tmp_path / "ds")
    identity = open_source(root).identity()
    assert identity["format"] == "files"
    assert identity["path"] == str(root)
    assert [entry["name"] for entry in identity["files"]] == FILES_KEYS
    for entry in identity["files"]:
        path = root / entry["name"]
        assert entry["size"] == path.stat().st_size
        assert entry["sha256"] == sha256(path)


def test_files_sink_pass_reads_no_content(tmp_path: Path) -> None:
    source = open_source(make_files_dir(tmp_path / "ds"))
    sink_pass = list(source.scan(load_content=False))
    assert [(item.key, item.record, item.data) for item in sink_pass] == [
        (key, key, None) for key in FILES_KEYS
    ]


def test_files_raw_rows_are_paths_that_workers_turn_into_the_scanned_items(
    tmp_path: Path,
) -> None:
    root = tmp_path / "ds"
    make_files_dir(root)
    (root / "deep" / "er").mkdir(parents=True)
    (root / "deep" / "er" / "z.txt").write_bytes(b"zed")
    (root / "big.bin").write_bytes(b"x" * 100)
    (root / "broken").symlink_to(root / "gone")
    source = open_source(root, max_item_bytes=10)
    assert source.raw_rows
    raws = list(source.raw_items())
    # The main process sends keys, never file bytes.
    assert [raw[2] if isinstance(raw, tuple) else None for raw in raws] == keys(source)
    # Unpickled in a worker, as the pool does, the source makes the very items scan() makes.
    worker_side = pickle.loads(pickle.dumps(source))  # noqa: S301 - our own bytes
    made = [worker_side.item_from_raw(raw) for raw in raws if isinstance(raw, tuple)]
    assert made == items(source)
    by_key = {item.key: item for item in made}
    assert by_key["deep/er/z.txt"].data == b"zed"
    assert by_key["broken"].error == "missing file"  # a dangling link: the worker finds out
    assert by_key["big.bin"].error is not None


def test_files_oversized_and_special_files_are_error_items(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    root.mkdir()
    (root / "big.bin").write_bytes(b"x" * 100)
    (root / "small.txt").write_bytes(b"ok")
    os.mkfifo(root / "pipe")  # reading it would block forever
    (root / "broken").symlink_to(root / "gone")
    found = items(open_source(root, max_item_bytes=10))
    assert_well_formed(found)
    errors = {item.key: item.error for item in found}
    assert errors["big.bin"] is not None
    assert "100 bytes, over the 10-byte item limit" in errors["big.bin"]
    assert errors["pipe"] == "file is not a regular file"
    assert errors["broken"] == "missing file"
    assert errors["small.txt"] is None


# --- JSON Lines -------------------------------------------------------------------------------


def test_jsonl_rows_become_text_items(tmp_path: Path) -> None:
    source = open_source(make_jsonl(tmp_path / "d.jsonl"))
    found = items(source)
    assert_well_formed(found)
    assert [item.key for item in found] == ["row-0", "row-1", "row-2", "row-3"]
    assert found[0].data == b"The first work."
    assert found[0].media_type == "text"
    assert found[0].metadata == {"id": "w1", "licence": "cc-by"}
    assert found[1].metadata["url"] == "https://example.org/2"
    assert found[0].record == json.dumps(JSONL_ROWS[0]).encode() + b"\n"
    assert source.count() == len(found)  # the progress bar's total
    identity = source.identity()
    assert identity["files"] == [
        {"name": "d.jsonl", "size": source.root.stat().st_size, "sha256": sha256(source.root)}
    ]


def test_jsonl_count_is_the_number_of_items_read(tmp_path: Path) -> None:
    # Blank and whitespace-only lines are skipped by the reader and by the count; CRLF, an
    # invalid line, an overlong line and a last line without a terminator are items; lines
    # straddle the counter's 1 MiB blocks.
    row = json.dumps({"text": "x" * 300}).encode()
    lines = []
    for i in range(8_000):
        lines.append(row + (b"\r\n" if i % 3 else b"\n"))
        if i % 7 == 0:
            lines.append(b"\n" if i % 2 else b" \t\r\n")
    lines += [b"{not json\n", b'{"text": "' + b"y" * 5_000 + b'"}\n', b"\n", row]
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"".join(lines))
    assert path.stat().st_size > 2 << 20
    source = open_source(path, max_item_bytes=4_000)
    found = items(source)
    assert len(found) == 8_003
    assert sum(item.error is not None for item in found) == 2
    assert source.count() == len(found)


def test_jsonl_key_column_and_gzip(tmp_path: Path) -> None:
    plain = open_source(make_jsonl(tmp_path / "d.jsonl"), columns=ColumnMap(key="id"))
    packed = open_source(make_jsonl(tmp_path / "d.jsonl.gz"), columns=ColumnMap(key="id"))
    assert keys(plain) == ["w1", "w2", "w3", "w4"]
    assert [(i.key, i.data, i.metadata) for i in plain] == [
        (i.key, i.data, i.metadata) for i in packed
    ]
    assert items(plain)[0].metadata == {"licence": "cc-by"}


def test_jsonl_bad_lines_become_error_items_and_reading_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(
        b'{"text": "one"}\n'
        b'{"text": "two", oops}\n'
        b"\n"
        b"[1, 2, 3]\n"
        b'{"content": "three"}\n'
        b'{"title": "no content"}\n'
        b'{"text": 42}\n'
        b'{"text": "\xff\xfe"}\n'
        b'{"text": "last, no newline"}'
    )
    found = items(open_source(path))
    assert_well_formed(found)
    assert [item.error for item in found] == [
        None,
        "line 2: invalid JSON: Expecting property name enclosed in double quotes (column 17)",
        "line 4: not a JSON object (list)",
        None,
        "line 6: no content column (looked for text, content, body, image, img, jpg, png, "
        "image_bytes); name a text or image column",
        "line 7: column 'text' holds int, not text",
        "line 8: not valid UTF-8",
        None,
    ]
    assert found[2].data is None
    assert found[3].data == b"three"
    assert found[7].data == b"last, no newline"
    assert found[1].record == b'{"text": "two", oops}\n'


def test_jsonl_corrupt_gzip_keeps_the_lines_before_the_damage(tmp_path: Path) -> None:
    rows = [{"text": f"line {i} " + "x" * 50} for i in range(4000)]
    good = make_jsonl(tmp_path / "good.jsonl.gz", rows)
    damaged = tmp_path / "damaged.jsonl.gz"
    damaged.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    found = items(open_source(damaged))
    assert_well_formed(found)
    assert 0 < len(found) - 1 < len(rows)
    assert all(item.error is None for item in found[:-1])
    last = found[-1]
    assert last.error is not None
    assert last.error.startswith(
        f"damaged.jsonl.gz: corrupt gzip stream after line {len(found) - 1}"
    )
    assert found[-2].data == f"line {len(found) - 2} ".encode() + b"x" * 50


def test_jsonl_not_gzip_at_all(tmp_path: Path) -> None:
    path = tmp_path / "fake.jsonl.gz"
    path.write_bytes(b'{"text": "plain"}\n')
    (only,) = items(open_source(path))
    assert only.error is not None
    assert "corrupt gzip stream after line 0" in only.error


def test_jsonl_overlong_line_is_skipped_without_loading_it(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    long_line = json.dumps({"text": "y" * 5000}).encode()
    path.write_bytes(b'{"text": "a"}\n' + long_line + b'\n{"text": "b"}\n')
    found = items(open_source(path, max_item_bytes=1000))
    assert [item.data for item in found] == [b"a", None, b"b"]
    assert found[1].error == "line 2: longer than the 1000-byte item limit"


def test_jsonl_duplicate_and_empty_keys(tmp_path: Path) -> None:
    path = make_jsonl(
        tmp_path / "d.jsonl",
        [
            {"id": "a", "text": "1"},
            {"id": "a", "text": "2"},
            {"text": "3"},
            {"id": "b", "text": "4"},
        ],
    )
    found = items(open_source(path, columns=ColumnMap(key="id")))
    assert_well_formed(found)
    assert [(item.key, item.error) for item in found] == [
        ("a", None),
        ("a@row-1", "line 2: duplicate key 'a'"),
        ("row-2", "line 3: no key column 'id'"),
        ("b", None),
    ]


def test_jsonl_lone_surrogates_in_keys_and_metadata_make_unreadable_items(tmp_path: Path) -> None:
    # JSON may escape a lone surrogate ("\ud800"); Python decodes it into a str that cannot be
    # written as UTF-8 (decisions.parquet, the report). Such rows are refused, the run goes on.
    path = tmp_path / "d.jsonl"
    path.write_text(
        '{"id": "a\\ud800b", "text": "one"}\n'
        '{"id": "b", "text": "two", "source": {"site": ["x\\udc00"]}}\n'
        '{"id": "c", "text": "three", "source": "fine é"}\n',
        encoding="utf-8",
    )
    found = items(open_source(path, columns=ColumnMap(key="id", metadata=("source",))))
    assert_well_formed(found)
    assert [(item.key, item.error) for item in found] == [
        ("row-0", "line 1: key column 'id' is not valid Unicode"),
        ("b", "line 2: column 'source' is not valid Unicode"),
        ("c", None),
    ]


def test_jsonl_image_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "red.png").write_bytes(RED)
    path = make_jsonl(
        tmp_path / "d.jsonl",
        [
            {"image": "img/red.png", "caption": "red"},
            {"image": "img/missing.png", "caption": "gone"},
            {"image": None, "caption": "null"},
        ],
    )
    found = items(open_source(path))
    assert found[0].data == RED
    assert found[0].media_type == "image"
    assert found[0].metadata == {"caption": "red"}
    assert found[1].error == "line 2: missing image path 'img/missing.png'"
    assert found[2].error == "line 3: column 'image' is empty"
    # The sink pass does not read image files at all.
    sink_pass = list(open_source(path).scan(load_content=False))
    assert [item.data for item in sink_pass] == [None, None, None]
    assert [item.record for item in sink_pass] == [item.record for item in found]


def test_explicit_columns_for_jsonl(tmp_path: Path) -> None:
    path = make_jsonl(
        tmp_path / "d.jsonl",
        [{"body": "b", "text": "t", "note": "n", "link": "https://x"}],
    )
    (auto,) = items(open_source(path))
    assert auto.data == b"t"  # "text" comes before "body" in the autodetect order
    spec = ColumnMap(text="body", url="link", metadata=("note",))
    (named,) = items(open_source(path, columns=spec))
    assert named.data == b"b"
    assert named.metadata == {"note": "n", "url": "https://x"}
    (bare,) = items(open_source(path, columns=ColumnMap(metadata=())))
    assert bare.metadata == {}


# --- CSV --------------------------------------------------------------------------------------


def test_csv_rows_with_bom_and_quoted_newlines(tmp_path: Path) -> None:
    source = open_source(
        make_csv(tmp_path / "d.csv", CSV_ROWS, bom=True), columns=ColumnMap(key="id")
    )
    found = items(source)
    assert_well_formed(found)
    assert [item.key for item in found] == ["c1", "c2", "c3"]
    assert found[1].data == b"a field, with a comma\nand a newline"
    assert found[2].data == "caf\u00e9 \u2603".encode()
    assert found[0].metadata == {"licence": "cc-by"}  # the BOM is not part of "id"
    assert found[0].record == ["c1", "plain text", "cc-by"]
    assert source.count() is None


def test_csv_wrong_field_count_and_bad_bytes_are_error_items(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(
        b"id,text\r\nr1,good\r\nr2,too,many\r\nr3\r\n\r\nr4,caf\xe9 in latin-1\r\nr5,fine again\r\n"
    )
    found = items(open_source(path))
    assert_well_formed(found)
    assert [(item.key, item.error) for item in found] == [
        ("row-0", None),
        ("row-1", "line 3: expected 2 fields, found 3"),
        ("row-2", "line 4: expected 2 fields, found 1"),
        ("row-3", "line 6: not valid UTF-8"),
        ("row-4", None),
    ]
    assert found[4].data == b"fine again"


def test_csv_key_column_problems(tmp_path: Path) -> None:
    rows = [["id", "text"], ["k", "1"], ["", "2"], ["k", "3"], ["row-1", "4"]]
    found = items(open_source(make_csv(tmp_path / "d.csv", rows), columns=ColumnMap(key="id")))
    assert_well_formed(found)
    assert [(item.key, item.error) for item in found] == [
        ("k", None),
        ("row-1", "line 3: key column 'id' is empty"),
        ("k@row-2", "line 4: duplicate key 'k'"),
        # A real key that an earlier error item already took is a duplicate too: fail closed.
        ("row-1@row-3", "line 5: duplicate key 'row-1'"),
    ]


def test_csv_source_level_problems(tmp_path: Path) -> None:
    utf16 = tmp_path / "u16.csv"
    utf16.write_bytes("id,text\n1,x\n".encode("utf-16"))
    with pytest.raises(UnreadableInputError, match=r"u16\.csv: looks like UTF-16"):
        open_source(utf16)
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(UnreadableInputError, match=r"empty\.csv: empty CSV file"):
        open_source(empty)
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"id,t\xe9xt\n1,x\n")
    with pytest.raises(UnreadableInputError, match="header row is not valid UTF-8"):
        open_source(latin)
    dup = make_csv(tmp_path / "dup.csv", [["text", "text"], ["a", "b"]])
    with pytest.raises(InvalidInputError, match="duplicate column names: text"):
        open_source(dup)
    good = make_csv(tmp_path / "d.csv", CSV_ROWS)
    with pytest.raises(InvalidInputError, match=r"d\.csv: no text column 'body' \(columns: id"):
        open_source(good, columns=ColumnMap(text="body"))
    with pytest.raises(InvalidInputError, match="no metadata column 'year'"):
        open_source(good, columns=ColumnMap(metadata=("year",)))
    no_content = make_csv(tmp_path / "n.csv", [["id", "title"], ["1", "x"]])
    with pytest.raises(InvalidInputError, match="no content column"):
        open_source(no_content)


def test_csv_long_fields_are_read(tmp_path: Path) -> None:
    text = "word " * 60_000  # 300 kB, over the csv module's 128 KiB default field limit
    path = make_csv(tmp_path / "d.csv", [["text"], [text], ["short"]])
    assert [item.data for item in open_source(path)] == [text.encode(), b"short"]


# --- Parquet ----------------------------------------------------------------------------------


def test_parquet_rows_batches_and_count(tmp_path: Path) -> None:
    source = open_source(make_parquet(tmp_path / "d.parquet"), columns=ColumnMap(key="id"))
    found = items(source)
    assert_well_formed(found)
    assert [item.key for item in found] == ["10", "11", "12", "13", "14"]
    assert [item.data for item in found] == [RED, GREEN, BLUE, RED, GREEN]
    assert {item.media_type for item in found} == {"image"}
    assert found[2].metadata == {"caption": "blue"}
    assert source.count() == 5
    assert source.identity()["files"][0]["sha256"] == sha256(source.root)


def test_parquet_hf_style_image_structs_and_paths(tmp_path: Path) -> None:
    (tmp_path / "red.png").write_bytes(RED)
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table(
        {
            "text": ["inline", "by path", "missing", "empty"],
            "image": pa.array(
                [
                    {"bytes": GREEN, "path": "ignored.png"},
                    {"bytes": None, "path": "red.png"},
                    {"bytes": None, "path": "nowhere.png"},
                    None,
                ],
                image_type,
            ),
        }
    )
    pq.write_table(table, tmp_path / "d.parquet")
    found = items(open_source(tmp_path / "d.parquet"))
    assert [item.data for item in found] == [GREEN, RED, None, None]
    assert found[0].metadata == {"text": "inline"}  # the caption is metadata when an image exists
    assert found[2].error == "row 2: missing image path 'nowhere.png'"
    assert found[3].error == "row 3: column 'image' is empty"


def test_parquet_wrong_column_type_is_refused_before_reading(tmp_path: Path) -> None:
    pq.write_table(pa.table({"text": [1, 2, 3]}), tmp_path / "ints.parquet")
    with pytest.raises(
        InvalidInputError, match=r"ints\.parquet: text column 'text' has type int64"
    ):
        open_source(tmp_path / "ints.parquet")
    pq.write_table(pa.table({"image": [1.5]}), tmp_path / "floats.parquet")
    with pytest.raises(InvalidInputError, match="image column 'image' has type double"):
        open_source(tmp_path / "floats.parquet")


def test_parquet_that_is_not_parquet(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    path.write_bytes(b"not a parquet file at all")
    with pytest.raises(UnreadableInputError, match=r"d\.parquet: not a readable Parquet file"):
        open_source(path)


# --- WebDataset -------------------------------------------------------------------------------


def test_webdataset_samples_keys_and_metadata(tmp_path: Path) -> None:
    root = make_webdataset(tmp_path / "wds")
    source = open_source(root)
    found = items(source)
    assert_well_formed(found)
    assert [item.key for item in found] == WDS_KEYS
    first = found[0]
    assert first.data == RED
    assert first.media_type == "image"
    assert first.metadata == {"txt": "a red square", "licence": "cc-by", "n": 0}
    assert found[1].data == GREEN
    assert found[1].metadata == {"cls": "3"}
    assert found[2].data == "just text \u2603".encode()
    assert found[2].media_type == "text"
    assert isinstance(first.record, TarRecord)
    assert first.record.shard == "shard-000.tar"
    assert [info.name for info, _ in first.record.members] == ["s0.png", "s0.json", "s0.txt"]
    assert source.count() is None
    identity = source.identity()
    assert [entry["name"] for entry in identity["files"]] == ["shard-000.tar", "shard-001.tar"]
    assert identity["files"][1]["sha256"] == sha256(root / "shard-001.tar")


def test_webdataset_single_shard_and_odd_members(tmp_path: Path) -> None:
    path = tmp_path / "one.tar"
    with tarfile.open(path, "w") as archive:
        tar_member(archive, "dir/a.png", RED)
        tar_member(archive, "dir/a.json", b"not json")
        tar_member(archive, "README", b"no extension: not a sample")
        tar_member(archive, "b.json", b'{"only": "metadata"}')
        tar_member(archive, "c.txt", b"\xff not utf-8")
        tar_member(archive, "dir/a.png", BLUE)  # same key again, later: a duplicate sample
    found = items(open_source(path))
    assert_well_formed(found)
    assert [(item.key, item.error) for item in found] == [
        ("one/dir/a", None),
        ("one/b", "one.tar: sample 'b' has no image or text member (found: json)"),
        ("one/c", "one.tar: member c.txt is not valid UTF-8"),
        ("one/dir/a~1", "one.tar: duplicate sample key 'dir/a'"),
    ]
    assert found[0].metadata["json_error"].startswith("invalid JSON")
    assert found[1].metadata == {"only": "metadata"}


def _truncate(path: Path, size: int) -> None:
    with path.open("r+b") as handle:
        handle.truncate(size)


def test_webdataset_truncated_in_a_member_then_next_shard(tmp_path: Path) -> None:
    root = make_webdataset(tmp_path / "wds")
    shard = root / "shard-000.tar"
    big = os.urandom(5000)
    make_shard(
        shard, [("s0", {"png": RED}), ("s1", {"jpg": big, "json": b"{}"}), ("s2", {"png": BLUE})]
    )
    # s0.png header + data take 1024 bytes (RED < 512); s1.jpg's header follows; cut in its data.
    _truncate(shard, 1024 + 512 + 2000)
    found = items(open_source(root))
    assert_well_formed(found)
    assert [item.key for item in found] == ["shard-000/s0", "shard-000/s1", *WDS_KEYS[3:]]
    assert found[0].error is None
    error = found[1].error
    assert error is not None
    assert error.startswith("shard-000.tar: truncated or corrupt in member 's1.jpg'")
    assert [item.error for item in found[2:]] == [None, None]
    assert found[2].data == BLUE


def test_webdataset_truncated_in_a_header(tmp_path: Path) -> None:
    path = make_shard(tmp_path / "x.tar", [("a", {"png": RED}), ("b", {"png": GREEN})])
    _truncate(path, 1024 + 100)  # a.png complete, b.png's header cut short
    found = items(open_source(path))
    assert [item.key for item in found] == ["x/a"]
    assert found[0].error is not None
    assert "x.tar: truncated or corrupt after member 'a.png'" in found[0].error
    assert "ends inside a header" in found[0].error


def test_webdataset_garbage_and_missing_trailer(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"this is not a tar file" * 40)
    (only,) = items(open_source(garbage))
    assert only.key == "garbage/<corrupt>"
    assert only.error is not None
    assert only.error.startswith("garbage.tar: truncated or corrupt at the start")
    # A shard cut exactly after its last member (no end-of-archive blocks) is still whole.
    whole = make_shard(tmp_path / "whole.tar", [("a", {"png": RED}), ("b", {"png": GREEN})])
    _truncate(whole, 2048)
    assert [(item.key, item.error) for item in open_source(whole)] == [
        ("whole/a", None),
        ("whole/b", None),
    ]


def test_webdataset_oversized_member(tmp_path: Path) -> None:
    path = make_shard(
        tmp_path / "x.tar", [("a", {"png": RED, "txt": b"cap"}), ("b", {"txt": b"t"})]
    )
    found = items(open_source(path, max_item_bytes=len(RED) - 1))
    assert found[0].error is not None
    assert "member 'a.png' is" in found[0].error
    assert found[1].data == b"t"


def test_webdataset_directory_needs_shards(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.md").write_text("x")
    with pytest.raises(InvalidInputError, match=r"no \.tar shards"):
        open_source(tmp_path / "d", format="webdataset")


# --- Hugging Face -----------------------------------------------------------------------------


def test_hf_dataset_with_image_feature(tmp_path: Path) -> None:
    root = make_hf(tmp_path / "hf")
    source = open_source(root)
    found = items(source)
    assert_well_formed(found)
    assert [item.key for item in found] == ["row-0", "row-1", "row-2"]
    assert [item.data for item in found] == [RED, GREEN, BLUE]  # raw bytes, not re-encoded
    assert found[0].media_type == "image"
    assert found[0].metadata == {"text": "hf caption 0", "licence": "cc-by"}
    assert source.count() == 3
    names = [entry["name"] for entry in source.identity()["files"]]
    assert "state.json" in names
    assert any(name.endswith(".arrow") for name in names)


def test_hf_dataset_dict_splits_in_sorted_order(tmp_path: Path) -> None:
    source = open_source(make_hf_dict(tmp_path / "hf"), columns=ColumnMap(text="text"))
    found = items(source)
    assert_well_formed(found)
    assert [item.key for item in found] == ["test/0", "train/0", "train/1"]
    assert [item.data for item in found] == [
        b"test caption 0",
        b"train caption 0",
        b"train caption 1",
    ]
    assert found[0].record == ("test", 0)
    assert "image" in found[0].metadata  # not the content here, so kept as metadata
    assert source.count() == 3


def test_hf_key_column_and_wrong_type(tmp_path: Path) -> None:
    dataset = datasets.Dataset.from_dict({"id": [5, 6], "text": ["a", "b"]})
    _save(dataset, tmp_path / "hf")
    assert keys(open_source(tmp_path / "hf", columns=ColumnMap(key="id"))) == ["5", "6"]
    bad = datasets.Dataset.from_dict({"text": [1, 2]})
    _save(bad, tmp_path / "bad")
    with pytest.raises(InvalidInputError, match="text column 'text' has feature Value"):
        open_source(tmp_path / "bad")


def test_hf_iteration_leaves_the_dataset_directory_alone(tmp_path: Path) -> None:
    root = make_hf(tmp_path / "hf")
    before = sorted(p.name for p in root.iterdir())
    list(open_source(root))
    assert sorted(p.name for p in root.iterdir()) == before
