"""Dataset sources: stream every supported dataset format as :class:`~consentry.gate.item.Item`.

A dataset builder points the gate at the data in the format they already use; a source turns
it into items in a deterministic order (``ordinal`` 0..n-1 across the whole source, ``key``
unique), without ever loading the whole dataset. The admitted subset is written by
:mod:`consentry.gate.sinks` in a *second* pass over the same source, so a source must give the
same items every time it is iterated.

Formats (:data:`FORMATS`) and how :func:`detect_format` recognises them:

============  ===================================================  ==============================
format        input                                                item key
============  ===================================================  ==============================
files         a directory of files (nested, hidden names skipped)  POSIX path relative to root
jsonl         ``*.jsonl`` / ``*.ndjson`` (optionally ``.gz``)      key column, else ``row-<n>``
csv           ``*.csv`` (UTF-8, BOM allowed)                       key column, else ``row-<n>``
parquet       ``*.parquet``                                        key column, else ``row-<n>``
webdataset    a ``*.tar`` shard or a directory of only ``*.tar``   ``<shard stem>/<sample key>``
hf            a ``datasets`` ``save_to_disk`` directory            ``row-<n>``, ``<split>/<n>``
============  ===================================================  ==============================

Failure policy (the gate fails closed, so a source never silently drops data it was given):

* Problems with *one* item (a malformed JSON line, a CSV row with the wrong number of fields,
  a missing image path, a truncated tar member, an oversized file) become an item with
  ``error`` set, and reading goes on. The gate denies such items as unreadable.
* Problems that make the *whole* source meaningless (no such path, unknown format, a column
  the user named that does not exist, a Parquet / HF column of the wrong type, an empty
  directory, a CSV header that is not UTF-8) raise :class:`~consentry.errors.InvalidInputError`
  (or its :class:`~consentry.errors.UnreadableInputError` subclass) from :func:`open_source`,
  before the first item, with a one-line message naming the file.
* Decisions on the open questions: a non-UTF-8 CSV gives *per-row* error items (rows that
  decode are still read; a UTF-16 file or non-UTF-8 header is a source-level error); a
  Parquet / HF column of the wrong type is a source-level error (the schema is known up
  front and the type is the same for every row, so per-row errors would only deny the whole
  dataset more noisily); a gzip stream that breaks mid-way gives one error item and ends the
  file (nothing after a corrupt deflate block can be trusted); a Parquet file that breaks
  mid-way raises, since no later row can be located.

Memory is bounded by the largest item (``max_item_bytes``) and a small batch (Parquet row
groups are read in batches of :data:`BATCH_ROWS` rows; HF datasets are memory-mapped). The
only per-row state is the key-uniqueness check when a key *column* is used: an 8-byte digest
per row (~70 bytes with set overhead), needed because duplicate keys in the data would
otherwise break the one-decision-per-key contract.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import gzip
import hashlib
import io
import itertools
import json
import os
import re
import stat
import tarfile
import zlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from consentry.errors import ConfigurationError, InvalidInputError, UnreadableInputError
from consentry.filehash import hash_file
from consentry.fingerprint.media import detect_media_type
from consentry.gate.item import Item

# A line the JSON Lines reader skips: nothing but whitespace (what bytes.strip() removes).
_BLANK_LINE = re.compile(rb"^[ \t\r\x0b\x0c]*\n", re.MULTILINE)

__all__ = [
    "BATCH_ROWS",
    "CHUNK_MAX_BYTES",
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_MAX_ITEM_BYTES",
    "FORMATS",
    "IMAGE_COLUMNS",
    "IMAGE_EXTENSIONS",
    "TEXT_COLUMNS",
    "TEXT_EXTENSIONS",
    "ColumnMap",
    "CsvSource",
    "FilesSource",
    "HfSource",
    "JsonlSource",
    "ParquetSource",
    "RawRow",
    "Source",
    "TarRecord",
    "WebDatasetSource",
    "chunked",
    "detect_format",
    "open_source",
]

FORMATS: tuple[str, ...] = ("files", "jsonl", "csv", "parquet", "webdataset", "hf")
"""Every format :func:`open_source` understands."""

DEFAULT_MAX_ITEM_BYTES = 256 * 1024 * 1024
"""Items larger than this become error items instead of being read into memory."""

BATCH_ROWS = 64
"""Rows per Parquet / HF batch: small, because a row may carry a multi-megabyte image."""

TEXT_COLUMNS: tuple[str, ...] = ("text", "content", "body")
"""Column names tried, in order and case-insensitively, when no text column is named."""

IMAGE_COLUMNS: tuple[str, ...] = ("image", "img", "jpg", "png", "image_bytes")
"""Column names tried, in order and case-insensitively, when no image column is named."""

URL_COLUMNS: tuple[str, ...] = ("url",)

IMAGE_EXTENSIONS: tuple[str, ...] = ("jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff")
"""WebDataset member extensions taken as the image, in order of preference."""

TEXT_EXTENSIONS: tuple[str, ...] = ("txt", "text")
"""WebDataset member extensions taken as the text when a sample has no image."""

_SUPPORTED = (
    "files (a directory), jsonl (.jsonl, .jsonl.gz), csv (.csv), parquet (.parquet), "
    "webdataset (.tar or a directory of .tar), hf (a datasets save_to_disk directory)"
)
_HASH_CHUNK = 1 << 20
_SIDE_MEMBER_LIMIT = 64 * 1024  # tar side members larger than this stay out of metadata
_COMPRESSED_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd")


# --- columns ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ColumnMap:
    """Which columns of a table hold the key, the content and the metadata.

    ``None`` means "autodetect": the text column is the first of :data:`TEXT_COLUMNS`
    present, the image column the first of :data:`IMAGE_COLUMNS`, the URL column ``url``
    (all case-insensitive). Naming either ``text`` or ``image`` turns autodetection of the
    other content column off. When a row has both an image and a text column, the image is
    the item's content and the text (usually a caption) goes into the metadata. ``key=None``
    numbers rows (``row-<n>``). ``metadata=None`` copies every column that is neither the
    key nor the content; ``metadata=()`` copies none.
    """

    key: str | None = None
    text: str | None = None
    image: str | None = None
    url: str | None = None
    metadata: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class _Columns:
    """A :class:`ColumnMap` resolved against the columns actually present."""

    key: str | None
    content: str
    kind: Literal["text", "image"]
    url: str | None
    metadata: tuple[str, ...]


class _ColumnError(Exception):
    """A column problem; the caller decides whether it is per row or for the whole source."""


def _find_column(candidates: Sequence[str], names: Sequence[str]) -> str | None:
    lowered = {name.lower(): name for name in reversed(names)}
    for candidate in candidates:
        if candidate in names:
            return candidate
        if candidate.lower() in lowered:
            return lowered[candidate.lower()]
    return None


def _resolve_columns(spec: ColumnMap, names: Sequence[str], *, strict: bool) -> _Columns:
    """Resolve ``spec`` against ``names``; ``strict`` also requires named metadata columns."""
    for role, name in (("key", spec.key), ("text", spec.text), ("image", spec.image)):
        if name is not None and name not in names:
            raise _ColumnError(f"no {role} column {name!r}")
    if spec.text is None and spec.image is None:
        text = _find_column(TEXT_COLUMNS, names)
        image = _find_column(IMAGE_COLUMNS, names)
    else:
        text, image = spec.text, spec.image
    kind: Literal["text", "image"]
    if image is not None:
        content, kind = image, "image"
    elif text is not None:
        content, kind = text, "text"
    else:
        looked = ", ".join(TEXT_COLUMNS + IMAGE_COLUMNS)
        raise _ColumnError(f"no content column (looked for {looked}); name a text or image column")
    if spec.url is not None:
        if strict and spec.url not in names:
            raise _ColumnError(f"no url column {spec.url!r}")
        url = spec.url if spec.url in names else None
    else:
        url = _find_column(URL_COLUMNS, names)
    if spec.metadata is None:
        metadata = tuple(name for name in names if name not in (spec.key, content))
    else:
        missing = [name for name in spec.metadata if name not in names]
        if strict and missing:
            raise _ColumnError(f"no metadata column {missing[0]!r}")
        metadata = tuple(name for name in spec.metadata if name in names)
    return _Columns(key=spec.key, content=content, kind=kind, url=url, metadata=metadata)


def _describe(columns: Sequence[str]) -> str:
    shown = ", ".join(columns[:20])
    return shown + (", ..." if len(columns) > 20 else "")


def _resolve_or_raise(spec: ColumnMap, names: Sequence[str], where: str) -> _Columns:
    try:
        return _resolve_columns(spec, names, strict=True)
    except _ColumnError as exc:
        raise InvalidInputError(f"{where}: {exc} (columns: {_describe(names)})") from None


class _KeyGuard:
    """Keeps keys unique when they come from the data (a key column, tar member names).

    Stores an 8-byte digest per key rather than the key: memory per row stays small and
    independent of the key's length. A digest collision (about 1 in 2**64 per pair) makes a
    key look duplicated, which only denies that item.
    """

    def __init__(self) -> None:
        self._seen: set[bytes] = set()

    def claim(self, key: str) -> bool:
        digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        if digest in self._seen:
            return False
        self._seen.add(digest)
        return True

    def unique(self, candidate: str) -> str:
        """``candidate`` if unused, else ``candidate~1``, ``candidate~2``, ... (deterministic)."""
        if self.claim(candidate):
            return candidate
        for n in itertools.count(1):
            alternative = f"{candidate}~{n}"
            if self.claim(alternative):
                return alternative
        raise AssertionError("unreachable")  # pragma: no cover - itertools.count is infinite


# --- reading content --------------------------------------------------------------------------


def _stat_problem(path: Path, max_bytes: int, what: str) -> str | None:
    """Why ``path`` cannot be an item's content (missing, not regular, too big), or None."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return f"missing {what}"
    except OSError as exc:
        return f"cannot read {what}: {exc.strerror or exc}"
    if not stat.S_ISREG(info.st_mode):
        # FIFOs and devices would block or never end; only regular files are content.
        return f"{what} is not a regular file"
    if info.st_size > max_bytes:
        return f"{what} is {info.st_size} bytes, over the {max_bytes}-byte item limit"
    return None


def _read_limited(path: Path, max_bytes: int, what: str) -> tuple[bytes | None, str | None]:
    """Read a regular file of at most ``max_bytes``; ``(data, None)`` or ``(None, error)``."""
    problem = _stat_problem(path, max_bytes, what)
    if problem is not None:
        return None, problem
    try:
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        return None, f"cannot read {what}: {exc.strerror or exc}"
    if len(data) > max_bytes:  # the file grew between stat and read
        return None, f"{what} is over the {max_bytes}-byte item limit"
    return data, None


def _text_content(value: Any, column: str, max_bytes: int) -> tuple[bytes | None, str | None]:
    if value is None:
        return None, f"column {column!r} is empty"
    if not isinstance(value, str):
        return None, f"column {column!r} holds {type(value).__name__}, not text"
    try:
        data = value.encode("utf-8")
    except UnicodeEncodeError:
        return None, f"column {column!r} is not valid UTF-8"
    if len(data) > max_bytes:
        return None, f"column {column!r} is {len(data)} bytes, over the {max_bytes}-byte limit"
    return data, None


def _image_content(
    value: Any, column: str, base_dir: Path, max_bytes: int, load: bool
) -> tuple[bytes | None, str | None]:
    """Image bytes from raw bytes, an HF ``{"bytes", "path"}`` dict, or a relative path."""
    if isinstance(value, Mapping):
        raw = value.get("bytes")
        value = raw if raw is not None else value.get("path")
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        if len(data) > max_bytes:
            return None, f"column {column!r} is {len(data)} bytes, over the {max_bytes}-byte limit"
        return data, None
    if isinstance(value, str) and value:
        if not load:
            return None, None
        # Paths in a table are relative to the table's directory (absolute paths stay as is).
        return _read_limited(base_dir / value, max_bytes, f"image path {value!r}")
    if value is None or value == "":
        return None, f"column {column!r} is empty"
    return None, f"column {column!r} holds {type(value).__name__}, not image bytes or a path"


def _row_item(
    row: Mapping[str, Any],
    columns: _Columns,
    *,
    key: str,
    ordinal: int,
    where: str,
    base_dir: Path,
    record: Any,
    max_bytes: int,
    load: bool,
) -> Item:
    """Turn one table row (already keyed) into an item, or an error item naming ``where``."""
    metadata = {name: row[name] for name in columns.metadata if name in row}
    if columns.url is not None and row.get(columns.url) is not None:
        metadata["url"] = row[columns.url]
    for name, field in metadata.items():
        if not _is_unicode_value(field):
            # Copied into decisions.parquet and the report, which are UTF-8: refuse the row.
            return Item(
                key, ordinal, error=f"{where}: column {name!r} is not valid Unicode", record=record
            )
    value = row.get(columns.content)
    if columns.kind == "text":
        data, error = _text_content(value, columns.content, max_bytes)
    else:
        data, error = _image_content(value, columns.content, base_dir, max_bytes, load)
    if error is not None:
        return Item(key, ordinal, metadata=metadata, error=f"{where}: {error}", record=record)
    return Item(key, ordinal, data, columns.kind, metadata, record=record)


def _is_unicode(text: str) -> bool:
    """False for a str holding a lone surrogate: a JSON "\\ud800" escape, or an undecodable
    byte of a file read with ``errors="surrogateescape"`` (CSV)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_unicode_value(value: Any) -> bool:
    """False when a (possibly nested) JSON value holds a string with a lone surrogate."""
    if isinstance(value, str):
        return value.isascii() or _is_unicode(value)
    if isinstance(value, Mapping):
        return all(_is_unicode_value(k) and _is_unicode_value(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(_is_unicode_value(v) for v in value)
    return True


def _row_key(
    row: Mapping[str, Any], columns: _Columns, default: str, guard: _KeyGuard, prefix: str = ""
) -> tuple[str, str | None]:
    """The item key for a row and, when the key column is unusable, why."""
    if columns.key is None:
        return default, None
    value = row.get(columns.key)
    if value is None or value == "":
        return guard.unique(default), f"key column {columns.key!r} is empty"
    key = prefix + str(value)
    if not _is_unicode(key):
        # JSON allows "\ud800"-style escapes of lone surrogates: such a key cannot be written
        # to decisions.parquet, the manifest or the subset, so the row gets a positional key.
        return guard.unique(default), f"key column {columns.key!r} is not valid Unicode"
    if not guard.claim(key):
        return guard.unique(f"{key}@{default}"), f"duplicate key {key!r}"
    return key, None


def _keyed_row_item(
    row: Mapping[str, Any],
    columns: _Columns,
    guard: _KeyGuard,
    *,
    default: str,
    ordinal: int,
    where: str,
    base_dir: Path,
    record: Any,
    max_bytes: int,
    load: bool,
    prefix: str = "",
) -> Item:
    """Key one table row (:func:`_row_key`) and make it an item; a bad key is an error item."""
    key, key_error = _row_key(row, columns, default, guard, prefix)
    if key_error is not None:
        return Item(key, ordinal, error=f"{where}: {key_error}", record=record)
    return _row_item(
        row,
        columns,
        key=key,
        ordinal=ordinal,
        where=where,
        base_dir=base_dir,
        record=record,
        max_bytes=max_bytes,
        load=load,
    )


def _posix(path: str) -> str:
    return path.replace(os.sep, "/")


def _visible_tree(root: Path) -> Iterator[tuple[str, Path]]:
    """Every non-hidden regular file below ``root`` (sorted, symlinked dirs not followed)."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                path = Path(dirpath, name)
                yield _posix(os.path.relpath(path, root)), path


# --- the source interface ---------------------------------------------------------------------

RawRow = tuple[int, int, Any]
"""``(ordinal, line number, raw row)``: a line's bytes (JSON Lines) or a row's fields (CSV)."""


class Source(ABC):
    """A dataset the gate can stream, in a deterministic order, as many times as needed."""

    format: ClassVar[str]
    """One of :data:`FORMATS`."""

    def __init__(self, root: Path, *, max_item_bytes: int = DEFAULT_MAX_ITEM_BYTES) -> None:
        self.root = root
        """The dataset file or directory as given to :func:`open_source`."""
        self.max_item_bytes = max_item_bytes

    def __iter__(self) -> Iterator[Item]:
        return self.scan()

    @abstractmethod
    def scan(self, *, load_content: bool = True) -> Iterator[Item]:
        """Yield every item in order.

        ``load_content=False`` is the sink's pass: content that lives *outside* the record
        (file bytes, images named by a path) is not read, so ``data`` may be ``None``; keys,
        ordinals and ``record`` are the same as with ``load_content=True``.
        """

    def raw_items(self) -> Iterator[Item | RawRow]:
        """Every item in order, in the cheapest form that can be sent to a worker process.

        The gate's main process only splits the source into chunks; turning raw rows into
        items (JSON parsing, column lookups) is per-item work that belongs in the workers.
        A source yields either a finished :class:`Item` (without ``record``: the sink re-reads
        the source) or a :data:`RawRow` that :meth:`item_from_raw` turns into the very item
        :meth:`scan` would have yielded. By default every item is finished here.
        """
        for item in self.scan():
            yield dataclasses.replace(item, record=None) if item.record is not None else item

    @property
    def raw_rows(self) -> bool:
        """Whether :meth:`raw_items` may yield raw rows (workers then need the source)."""
        return False

    def item_from_raw(self, raw: RawRow) -> Item:
        """The item of a raw row from :meth:`raw_items` (called in a worker process)."""
        raise TypeError(f"{type(self).__name__} does not split raw rows")

    @abstractmethod
    def count(self) -> int | None:
        """The number of items when it is cheap to know (metadata, a directory walk)."""

    @abstractmethod
    def underlying_files(self) -> list[tuple[str, Path]]:
        """``(relative name, path)`` of every file the dataset consists of, sorted."""

    def identity(self) -> dict[str, Any]:
        """What was gated, for the manifest: format, path and each file's size and SHA-256.

        Files are hashed in 1 MiB chunks, so memory stays flat whatever their size.
        """
        files = []
        for name, path in self.underlying_files():
            try:
                size, sha256 = hash_file(path)
            except OSError as exc:
                raise UnreadableInputError(f"{path}: cannot read: {exc.strerror or exc}") from None
            files.append({"name": name, "size": size, "sha256": sha256})
        return {"format": self.format, "path": str(self.root), "files": files}


# --- files ------------------------------------------------------------------------------------


class FilesSource(Source):
    """A directory tree: one item per regular file, keyed by its POSIX path relative to root.

    Directories are walked in sorted order (a directory's files, then its subdirectories),
    hidden names (leading ``.``) are skipped, and symlinked directories are not followed (they
    could loop or leave the dataset). Symlinked *files* are read through the link.
    ``record`` is the relative path.
    """

    format = "files"

    def _walk(self) -> Iterator[tuple[str, Path | None, str | None]]:
        """``(key, path, None)`` per file, or ``(key, None, error)`` for unlistable parts."""
        errors: list[OSError] = []
        for dirpath, dirnames, filenames in os.walk(self.root, onerror=errors.append):
            yield from self._walk_errors(errors)
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            # One relpath per directory, not per file: the walk runs several times a run
            # (count, identity, deciding, subset), and per file it cost ~70 us of CPU.
            prefix = _posix(os.path.relpath(dirpath, self.root)) + "/"
            if prefix == "./":
                prefix = ""
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                path = Path(dirpath, name)
                rel = prefix + _posix(name)
                try:
                    rel.encode("utf-8")
                except UnicodeEncodeError:
                    # Keys end up in JSON manifests; undecodable names cannot be keys as is.
                    shown = os.fsencode(rel).decode("utf-8", "backslashreplace")
                    yield shown, None, "file name is not valid UTF-8"
                    continue
                yield rel, path, None
        yield from self._walk_errors(errors)

    def _walk_errors(self, errors: list[OSError]) -> Iterator[tuple[str, None, str]]:
        while errors:
            exc = errors.pop(0)
            where = _posix(os.path.relpath(exc.filename or self.root, self.root))
            yield where, None, f"cannot list directory: {exc.strerror or exc}"

    def scan(self, *, load_content: bool = True) -> Iterator[Item]:
        for ordinal, (key, path, error) in enumerate(self._walk()):
            if path is None:
                yield Item(key, ordinal, error=error)
                continue
            if not load_content:
                # The sink copies the file by path, so it only needs to know it is copyable.
                error = _stat_problem(path, self.max_item_bytes, "file")
                yield Item(key, ordinal, error=error, record=None if error else key)
                continue
            yield self._file_item(key, ordinal, path)

    def _file_item(self, key: str, ordinal: int, path: Path) -> Item:
        data, error = _read_limited(path, self.max_item_bytes, "file")
        if data is None:
            return Item(key, ordinal, error=error)
        media = detect_media_type(data, path.name).value
        return Item(key, ordinal, data, media, record=key)

    @property
    def raw_rows(self) -> bool:
        return True

    def raw_items(self) -> Iterator[Item | RawRow]:
        """Files as ``(ordinal, 0, key)``: the worker that decides a file reads it, so the
        main process neither reads every file nor copies its bytes to a worker (for images,
        ~40 kB each, that was most of the main process's work)."""
        for ordinal, (key, path, error) in enumerate(self._walk()):
            if path is None:
                yield Item(key, ordinal, error=error)
            else:
                yield ordinal, 0, key

    def item_from_raw(self, raw: RawRow) -> Item:
        ordinal, _, key = raw
        # The key is the file's POSIX path below the root (files with undecodable names,
        # whose keys are not paths, are never raw rows).
        return self._file_item(key, ordinal, self.root / key)

    def count(self) -> int:
        return sum(1 for _ in self._walk())

    def underlying_files(self) -> list[tuple[str, Path]]:
        return [(key, path) for key, path, _ in self._walk() if path is not None]


# --- JSON Lines -------------------------------------------------------------------------------


class _RowFileSource(Source):
    """What JSON Lines and CSV share: rows read in file order, each parsed where it is decided.

    Without a key column no key must be checked for uniqueness in order, so the main process
    only splits the file into raw rows and the workers parse them (:meth:`item_from_raw`).
    """

    columns: ColumnMap | _Columns

    @abstractmethod
    def _records(self) -> Iterator[tuple[int, int, Any, str | None]]:
        """``(ordinal, line number, raw row, None)``, or ``(ordinal, line number, None, why)``."""

    @abstractmethod
    def _item(self, raw: Any, line: int, ordinal: int, guard: _KeyGuard, load: bool) -> Item:
        """Parse and key one raw row."""

    def scan(self, *, load_content: bool = True) -> Iterator[Item]:
        guard = _KeyGuard()
        for ordinal, line, raw, error in self._records():
            if raw is None:
                yield Item(guard.unique(f"row-{ordinal}"), ordinal, error=error)
            else:
                yield self._item(raw, line, ordinal, guard, load_content)

    @property
    def raw_rows(self) -> bool:
        return self.columns.key is None

    def raw_items(self) -> Iterator[Item | RawRow]:
        if not self.raw_rows:
            yield from super().raw_items()
            return
        for ordinal, line, raw, error in self._records():
            if raw is None:
                # Without a key column no key is ever claimed, so guard.unique is the default.
                yield Item(f"row-{ordinal}", ordinal, error=error)
            else:
                yield ordinal, line, raw

    def item_from_raw(self, raw: RawRow) -> Item:
        ordinal, line, row = raw
        if not self.raw_rows:
            raise TypeError("rows keyed by a column are made by scan()")
        return self._item(row, line, ordinal, _KeyGuard(), True)


class JsonlSource(_RowFileSource):
    """JSON Lines, optionally gzip-compressed: one item per non-blank line.

    ``record`` is the line's original bytes (terminator included), so the sink writes admitted
    lines byte-identical. Columns are resolved per line, because JSON Lines has no schema: a
    line lacking the named content field is an error item, not a source error.
    """

    format = "jsonl"
    columns: ColumnMap  # resolved per line: JSON Lines has no schema

    def __init__(
        self, root: Path, columns: ColumnMap, *, max_item_bytes: int = DEFAULT_MAX_ITEM_BYTES
    ) -> None:
        super().__init__(root, max_item_bytes=max_item_bytes)
        self.columns = columns
        self.gzip = root.name.lower().endswith(".gz")
        # Column resolution per row shape (rows share a handful of shapes).
        self._shapes: dict[tuple[str, ...], _Columns | str] = {}

    def _records(self) -> Iterator[tuple[int, int, bytes | None, str | None]]:
        return self._read_lines()

    def _item(self, raw: Any, line: int, ordinal: int, guard: _KeyGuard, load: bool) -> Item:
        # The item keeps its record (the line): in a worker it stays there, never pickled back.
        return self._line_item(raw, line, ordinal, guard, self._shapes, load)

    def line_records(self) -> Iterator[tuple[int, bytes | None, str | None]]:
        """``(ordinal, original line, None)`` per item, or ``(ordinal, None, why)`` for a line
        that could not be read: the sink's pass, without parsing a single line (an item's
        ``record`` is its line whatever the line holds)."""
        for ordinal, _line_no, line, error in self._read_lines():
            yield ordinal, line, error

    def _read_lines(self) -> Iterator[tuple[int, int, bytes | None, str | None]]:
        """``(ordinal, line number, line, None)`` per non-blank line, or ``(ordinal, line
        number, None, why)`` for an overlong line or a stream that breaks (the last)."""
        try:
            raw = self.root.open("rb")
        except OSError as exc:
            raise UnreadableInputError(f"{self.root}: cannot read: {exc.strerror}") from None
        with raw, gzip.GzipFile(fileobj=raw, mode="rb") if self.gzip else raw as stream:
            yield from self._lines(stream)

    def _lines(
        self, stream: io.BufferedIOBase | gzip.GzipFile
    ) -> Iterator[tuple[int, int, bytes | None, str | None]]:
        limit = self.max_item_bytes + 2  # room for the "\r\n" after a maximal line
        ordinal = 0
        line_no = 0
        while True:
            try:
                line = stream.readline(limit)
                overlong = len(line) >= limit and not line.endswith(b"\n")
                while overlong and (rest := stream.readline(_HASH_CHUNK)):
                    if rest.endswith(b"\n"):
                        break
            except (OSError, EOFError, zlib.error) as exc:
                # A broken compressed stream cannot be resynchronised: report and stop.
                what = "corrupt gzip stream" if self.gzip else "read error"
                error = f"{self.root.name}: {what} after line {line_no}: {exc}"
                yield ordinal, line_no, None, error
                return
            if not line:
                return
            line_no += 1
            if overlong:
                error = f"line {line_no}: longer than the {self.max_item_bytes}-byte item limit"
                yield ordinal, line_no, None, error
            elif not line.strip():
                continue
            else:
                yield ordinal, line_no, line, None
            ordinal += 1

    def _line_item(
        self,
        line: bytes,
        line_no: int,
        ordinal: int,
        guard: _KeyGuard,
        resolved: dict[tuple[str, ...], _Columns | str],
        load: bool,
    ) -> Item:
        default = f"row-{ordinal}"
        text = line[3:] if line_no == 1 and line.startswith(b"\xef\xbb\xbf") else line
        try:
            row = json.loads(text.decode("utf-8"))
        except UnicodeDecodeError:
            error = f"line {line_no}: not valid UTF-8"
        except json.JSONDecodeError as exc:
            error = f"line {line_no}: invalid JSON: {exc.msg} (column {exc.colno})"
        except (ValueError, RecursionError) as exc:  # huge integers, absurd nesting
            error = f"line {line_no}: invalid JSON: {exc}"
        else:
            if not isinstance(row, dict):
                error = f"line {line_no}: not a JSON object ({type(row).__name__})"
            else:
                return self._row(row, line, line_no, ordinal, guard, resolved, load)
        key = default if self.columns.key is None else guard.unique(default)
        return Item(key, ordinal, error=error, record=line)

    def _row(
        self,
        row: dict[str, Any],
        line: bytes,
        line_no: int,
        ordinal: int,
        guard: _KeyGuard,
        resolved: dict[tuple[str, ...], _Columns | str],
        load: bool,
    ) -> Item:
        names = tuple(row)
        columns = resolved.get(names)
        if columns is None:
            try:
                columns = _resolve_columns(self.columns, names, strict=False)
            except _ColumnError as exc:
                columns = str(exc)
            if len(resolved) < 256:  # rows of one dataset share a handful of shapes
                resolved[names] = columns
        if isinstance(columns, str):
            key = f"row-{ordinal}" if self.columns.key is None else guard.unique(f"row-{ordinal}")
            return Item(key, ordinal, error=f"line {line_no}: {columns}", record=line)
        return _keyed_row_item(
            row,
            columns,
            guard,
            default=f"row-{ordinal}",
            ordinal=ordinal,
            where=f"line {line_no}",
            base_dir=self.root.parent,
            record=line,
            max_bytes=self.max_item_bytes,
            load=load,
        )

    def count(self) -> int | None:
        """Non-blank lines of an uncompressed file, counted in C over 1 MiB blocks (~1 s per
        GB, only for the progress bar on a terminal); ``None`` for gzip, which would have to
        be decompressed twice."""
        if self.gzip:
            return None
        lines = 0
        try:
            with self.root.open("rb") as stream:
                carry = b""
                while block := stream.read(1 << 20):
                    block = carry + block
                    cut = block.rfind(b"\n") + 1  # whole lines only; the rest goes on
                    whole, carry = block[:cut], block[cut:]
                    lines += whole.count(b"\n") - len(_BLANK_LINE.findall(whole))
                if carry.strip():
                    lines += 1  # a last line without its terminator
        except OSError:
            return None  # the run itself reports what cannot be read
        return lines

    def underlying_files(self) -> list[tuple[str, Path]]:
        return [(self.root.name, self.root)]


# --- CSV --------------------------------------------------------------------------------------


class CsvSource(_RowFileSource):
    """CSV in the ``excel`` dialect (comma, double quotes), UTF-8 with or without BOM.

    The file is decoded with ``surrogateescape``, so a row that is not valid UTF-8 becomes an
    error item and the rows around it are still read; a UTF-16 file or a header that does not
    decode is a source-level error. ``record`` is the row's list of fields; the sink writes it
    back with the same dialect, line terminator and BOM. Fields may be as large as
    ``max_item_bytes``: the process-wide ``csv.field_size_limit`` is raised to that (never
    lowered), because its 128 KiB default would turn long texts into errors.
    """

    format = "csv"
    dialect = "excel"
    columns: _Columns

    def __init__(
        self, root: Path, columns: ColumnMap, *, max_item_bytes: int = DEFAULT_MAX_ITEM_BYTES
    ) -> None:
        super().__init__(root, max_item_bytes=max_item_bytes)
        try:
            with root.open("rb") as handle:
                head = handle.read(64 * 1024)
        except OSError as exc:
            raise UnreadableInputError(f"{root}: cannot read: {exc.strerror}") from None
        if head.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise UnreadableInputError(f"{root}: looks like UTF-16; save it as UTF-8")
        self.bom = head.startswith(b"\xef\xbb\xbf")
        first = head.split(b"\n", 1)[0]
        self.lineterminator = "\r\n" if first.endswith(b"\r") or b"\n" not in head else "\n"
        with self._open() as handle:
            header = next(csv.reader(handle, dialect=self.dialect), None)
        if not header:
            raise UnreadableInputError(f"{root}: empty CSV file (no header row)")
        if not all(_is_unicode(name) for name in header):
            raise UnreadableInputError(f"{root}: the header row is not valid UTF-8")
        duplicates = sorted({name for name in header if header.count(name) > 1})
        if duplicates:
            raise InvalidInputError(f"{root}: duplicate column names: {', '.join(duplicates)}")
        self.header: list[str] = header
        self.columns = _resolve_or_raise(columns, header, str(root))

    def _open(self) -> io.TextIOWrapper:
        # newline="" lets the csv module see quoted newlines and the original terminators.
        return self.root.open(encoding="utf-8-sig", errors="surrogateescape", newline="")

    def _records(self) -> Iterator[tuple[int, int, list[str] | None, str | None]]:
        return self._read_rows()

    def _item(self, raw: Any, line: int, ordinal: int, guard: _KeyGuard, load: bool) -> Item:
        return self._row(raw, line, ordinal, guard, len(self.header), load)

    def _read_rows(self) -> Iterator[tuple[int, int, list[str] | None, str | None]]:
        """``(ordinal, line, fields, None)`` per row, or ``(ordinal, line, None, why)``."""
        if csv.field_size_limit() < self.max_item_bytes:
            csv.field_size_limit(self.max_item_bytes)
        with self._open() as handle:
            reader = csv.reader(handle, dialect=self.dialect)
            next(reader)  # the header, validated in __init__
            for ordinal in itertools.count():
                try:
                    fields = next(reader, None)
                    while fields == []:  # blank lines are not rows
                        fields = next(reader, None)
                except csv.Error as exc:
                    yield ordinal, reader.line_num, None, f"line {reader.line_num}: {exc}"
                    continue
                if fields is None:
                    return
                yield ordinal, reader.line_num, fields, None

    def _row(
        self, fields: list[str], line: int, ordinal: int, guard: _KeyGuard, width: int, load: bool
    ) -> Item:
        default = f"row-{ordinal}"
        if len(fields) != width:
            error = f"line {line}: expected {width} fields, found {len(fields)}"
        elif not all(_is_unicode(value) for value in fields):
            error = f"line {line}: not valid UTF-8"
        else:
            row = dict(zip(self.header, fields, strict=True))
            return _keyed_row_item(
                row,
                self.columns,
                guard,
                default=default,
                ordinal=ordinal,
                where=f"line {line}",
                base_dir=self.root.parent,
                record=fields,
                max_bytes=self.max_item_bytes,
                load=load,
            )
        key = default if self.columns.key is None else guard.unique(default)
        return Item(key, ordinal, error=error, record=fields)

    def count(self) -> None:
        return None

    def underlying_files(self) -> list[tuple[str, Path]]:
        return [(self.root.name, self.root)]


# --- Parquet ----------------------------------------------------------------------------------


def _require(module: str) -> Any:
    """Import an optional dependency, or say how to install it."""
    import importlib

    package = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ImportError:
        hint = "pip install 'consentry[hf]'" if package == "datasets" else f"pip install {package}"
        raise ConfigurationError(
            f"reading this dataset format needs the {package!r} package ({hint})"
        ) from None


def _arrow_type_error(column: str, kind: str, arrow_type: Any) -> str | None:
    """Why ``arrow_type`` cannot hold ``kind`` content, or None when it can."""
    pa = _require("pyarrow")
    types = pa.types
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    stringy = types.is_string(arrow_type) or types.is_large_string(arrow_type)
    stringy = stringy or types.is_string_view(arrow_type)
    if kind == "text":
        ok = stringy
        wanted = "a string column"
    else:
        binary = types.is_binary(arrow_type) or types.is_large_binary(arrow_type)
        binary = (
            binary or types.is_binary_view(arrow_type) or types.is_fixed_size_binary(arrow_type)
        )
        struct = types.is_struct(arrow_type) and any(
            arrow_type.field(i).name in ("bytes", "path") for i in range(arrow_type.num_fields)
        )
        ok = stringy or binary or struct
        wanted = "binary, a path string, or a {bytes, path} struct"
    if ok:
        return None
    return f"{kind} column {column!r} has type {arrow_type}, expected {wanted}"


class ParquetSource(Source):
    """A Parquet file, read with ``ParquetFile.iter_batches`` in batches of BATCH_ROWS rows.

    Column types are checked against the schema before the first row: a text column must be a
    string, an image column binary, a path string or an HF-style ``{bytes, path}`` struct.
    ``record`` is the row index; the sink re-reads batches itself to keep the schema exact.
    """

    format = "parquet"

    def __init__(
        self, root: Path, columns: ColumnMap, *, max_item_bytes: int = DEFAULT_MAX_ITEM_BYTES
    ) -> None:
        super().__init__(root, max_item_bytes=max_item_bytes)
        pq = _require("pyarrow.parquet")
        pa = _require("pyarrow")
        try:
            with pq.ParquetFile(root) as parquet:
                self.schema: Any = parquet.schema_arrow
                self.num_rows: int = parquet.metadata.num_rows
        except (OSError, pa.ArrowException) as exc:
            raise UnreadableInputError(f"{root}: not a readable Parquet file: {exc}") from None
        names = list(self.schema.names)
        self.columns = _resolve_or_raise(columns, names, str(root))
        error = _arrow_type_error(
            self.columns.content,
            self.columns.kind,
            self.schema.field(self.columns.content).type,
        )
        if error is not None:
            raise InvalidInputError(f"{root}: {error}")

    def scan(self, *, load_content: bool = True) -> Iterator[Item]:
        pq = _require("pyarrow.parquet")
        pa = _require("pyarrow")
        guard = _KeyGuard()
        ordinal = 0
        try:
            with pq.ParquetFile(self.root) as parquet:
                for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
                    for row in batch.to_pylist():
                        yield _keyed_row_item(
                            row,
                            self.columns,
                            guard,
                            default=f"row-{ordinal}",
                            ordinal=ordinal,
                            where=f"row {ordinal}",
                            base_dir=self.root.parent,
                            record=ordinal,
                            max_bytes=self.max_item_bytes,
                            load=load_content,
                        )
                        ordinal += 1
        except (OSError, pa.ArrowException) as exc:
            # Without a readable page the rows after it cannot even be counted: stop loudly.
            raise UnreadableInputError(
                f"{self.root}: unreadable after row {ordinal}: {exc}"
            ) from None

    def count(self) -> int:
        return self.num_rows

    def underlying_files(self) -> list[tuple[str, Path]]:
        return [(self.root.name, self.root)]


# --- WebDataset -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TarRecord:
    """The original members of one WebDataset sample, for the sink to write back."""

    shard: str
    """File name of the shard the sample came from."""
    members: tuple[tuple[tarfile.TarInfo, bytes], ...]


def _split_member(name: str) -> tuple[str, str] | None:
    """WebDataset's key/extension split: directory + basename up to its first dot."""
    directory, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    if not dot or not stem:
        return None  # WebDataset ignores members without an extension (and dot-files)
    return (f"{directory}/{stem}" if directory else stem), ext


@dataclass(slots=True)
class _Group:
    key: str
    members: list[tuple[tarfile.TarInfo, bytes | None]]
    exts: dict[str, int]
    error: str | None = None


class WebDatasetSource(Source):
    """WebDataset tar shards, read in streaming mode (``r|*``), shard by shard in name order.

    Consecutive members sharing a key (directory + basename up to the first dot) form one
    sample, as in WebDataset; a repeated extension starts a new sample. The content is the
    first image extension present in the order of :data:`IMAGE_EXTENSIONS`, else a text
    member; ``json`` members are parsed and merged into the metadata, other small UTF-8
    members (``cls``, a caption ``txt``) are copied under their extension. A truncated or
    corrupt shard yields an error item naming the shard and member, and reading continues
    with the next shard. For uncompressed shards the block after the last member is checked,
    because ``tarfile`` silently treats a header cut in half as the end of the archive.
    """

    format = "webdataset"

    def __init__(self, root: Path, *, max_item_bytes: int = DEFAULT_MAX_ITEM_BYTES) -> None:
        super().__init__(root, max_item_bytes=max_item_bytes)
        if root.is_dir():
            self.shards = sorted(
                path
                for path in root.iterdir()
                if path.name.lower().endswith(".tar")
                and not path.name.startswith(".")
                and path.is_file()
            )
            if not self.shards:
                raise InvalidInputError(f"{root}: no .tar shards in this directory")
        else:
            self.shards = [root]

    def scan(self, *, load_content: bool = True) -> Iterator[Item]:
        ordinals = itertools.count()
        for shard in self.shards:
            yield from self._shard(shard, ordinals)

    def _shard(self, shard: Path, ordinals: Iterator[int]) -> Iterator[Item]:
        stem = shard.name[: -len(".tar")] if shard.name.lower().endswith(".tar") else shard.name
        guard = _KeyGuard()  # keys carry the shard stem, so uniqueness per shard suffices
        group: _Group | None = None
        last_member: str | None = None

        def broken(exc: BaseException, where: str) -> Item:
            key = guard.unique(f"{stem}/{group.key}" if group else f"{stem}/<corrupt>")
            error = f"{shard.name}: truncated or corrupt {where}: {exc}"
            return Item(key, next(ordinals), error=error)

        try:
            handle = shard.open("rb")
        except OSError as exc:
            yield broken(exc, "(cannot open)")
            return
        with handle:
            magic = handle.read(6)
            handle.seek(0)
            try:
                archive = tarfile.open(fileobj=handle, mode="r|*")
            except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
                yield broken(exc, "at the start")
                return
            with archive:
                while True:
                    try:
                        member = archive.next()
                    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
                        after = f"after member {last_member!r}" if last_member else "at the start"
                        yield broken(exc, after)
                        return
                    if member is None:
                        break
                    # Stream mode still remembers every header; forget them to keep memory flat.
                    archive.members = []  # type: ignore[attr-defined]  # real, but not in typeshed
                    last_member = member.name
                    split = _split_member(member.name) if member.isfile() else None
                    if split is None:
                        continue
                    key, ext = split
                    ext = ext.lower()
                    if group is None or group.key != key or ext in group.exts:
                        if group is not None:
                            yield self._item(stem, shard.name, group, guard, next(ordinals))
                        group = _Group(key, [], {})
                    data: bytes | None = None
                    if member.size > self.max_item_bytes:
                        group.error = (
                            f"member {member.name!r} is {member.size} bytes, over the "
                            f"{self.max_item_bytes}-byte item limit"
                        )
                    else:
                        try:
                            extracted = archive.extractfile(member)
                            data = extracted.read() if extracted is not None else b""
                        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
                            yield broken(exc, f"in member {member.name!r}")
                            return
                    group.exts[ext] = len(group.members)
                    group.members.append((member, data))
                if not magic.startswith(_COMPRESSED_MAGIC):
                    problem = self._trailer_problem(shard, archive.offset)
                    if problem is not None:
                        after = f"after member {last_member!r}" if last_member else "at the start"
                        yield broken(ValueError(problem), after)
                        return
        if group is not None:
            yield self._item(stem, shard.name, group, guard, next(ordinals))

    @staticmethod
    def _trailer_problem(shard: Path, offset: int) -> str | None:
        """Is the block where ``tarfile`` stopped a real end-of-archive (zeros, or EOF)?"""
        with shard.open("rb") as handle:
            handle.seek(offset)
            block = handle.read(tarfile.BLOCKSIZE)
        if not block or block == tarfile.NUL * tarfile.BLOCKSIZE:
            return None
        if len(block) < tarfile.BLOCKSIZE:
            return f"file ends inside a header at byte {offset + len(block)}"
        return f"invalid header at byte {offset}"

    def _item(self, stem: str, shard: str, group: _Group, guard: _KeyGuard, ordinal: int) -> Item:
        candidate = f"{stem}/{group.key}"
        key = guard.unique(candidate)
        if key != candidate:
            error = f"{shard}: duplicate sample key {group.key!r}"
            return Item(key, ordinal, error=error)
        if group.error is not None:
            return Item(key, ordinal, error=f"{shard}: {group.error}")
        members = [(info, data) for info, data in group.members if data is not None]
        record = TarRecord(shard, tuple(members))
        content_ext = next((ext for ext in IMAGE_EXTENSIONS if ext in group.exts), None)
        media = "image"
        if content_ext is None:
            content_ext = next((ext for ext in TEXT_EXTENSIONS if ext in group.exts), None)
            media = "text"
        metadata: dict[str, Any] = {}
        parsed: dict[str, Any] = {}
        for ext, index in group.exts.items():
            if ext == content_ext:
                continue
            payload = members[index][1]
            if ext == "json":
                try:
                    value = json.loads(payload)
                except (ValueError, RecursionError) as exc:
                    metadata["json_error"] = f"invalid JSON: {exc}"
                else:
                    if isinstance(value, dict):
                        parsed.update(value)
                    else:
                        metadata["json"] = value
            elif len(payload) <= _SIDE_MEMBER_LIMIT:
                with contextlib.suppress(UnicodeDecodeError):
                    metadata[ext] = payload.decode("utf-8").strip()
        metadata.update(parsed)
        if content_ext is None:
            found = ", ".join(group.exts) or "nothing"
            error = f"{shard}: sample {group.key!r} has no image or text member (found: {found})"
            return Item(key, ordinal, metadata=metadata, error=error, record=record)
        data = members[group.exts[content_ext]][1]
        if media == "text":
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                error = f"{shard}: member {group.key}.{content_ext} is not valid UTF-8"
                return Item(key, ordinal, metadata=metadata, error=error, record=record)
        return Item(key, ordinal, data, media, metadata, record=record)

    def count(self) -> None:
        return None

    def underlying_files(self) -> list[tuple[str, Path]]:
        if self.root.is_dir():
            return [(shard.name, shard) for shard in self.shards]
        return [(self.root.name, self.root)]


# --- Hugging Face datasets --------------------------------------------------------------------


def _hf_type_error(column: str, kind: str, feature: Any) -> str | None:
    datasets = _require("datasets")
    if isinstance(feature, datasets.Value):
        dtype = feature.dtype
        if dtype in ("string", "large_string"):
            return None
        if kind == "image" and dtype in ("binary", "large_binary"):
            return None
        shown = f"Value({dtype!r})"
    elif kind == "image" and isinstance(feature, datasets.Image):
        return None
    else:
        shown = type(feature).__name__
    wanted = "Value('string')" if kind == "text" else "Image, binary or a path string"
    return f"{kind} column {column!r} has feature {shown}, expected {wanted}"


class HfSource(Source):
    """A Hugging Face dataset saved with ``save_to_disk`` (a Dataset or a DatasetDict).

    Arrow files are memory-mapped and read with ``Dataset.iter(batch_size=BATCH_ROWS)``, so
    memory stays flat. Splits of a DatasetDict are read in sorted order with keys
    ``<split>/<row>``. Features that decode (Image, Audio, Video) are cast to
    ``decode=False`` so images arrive as their original bytes, never as re-encoded pixels.
    ``record`` is ``(split, row)`` (split ``None`` for a plain Dataset).
    """

    format = "hf"

    def __init__(
        self, root: Path, columns: ColumnMap, *, max_item_bytes: int = DEFAULT_MAX_ITEM_BYTES
    ) -> None:
        super().__init__(root, max_item_bytes=max_item_bytes)
        datasets = _require("datasets")
        try:
            loaded = datasets.load_from_disk(str(root))
        except (OSError, ValueError) as exc:
            raise UnreadableInputError(f"{root}: not a readable saved dataset: {exc}") from None
        if isinstance(loaded, datasets.DatasetDict):
            self.splits: list[tuple[str | None, Any]] = sorted(loaded.items())
        else:
            self.splits = [(None, loaded)]
        self.columns: dict[str | None, _Columns] = {}
        for split, dataset in self.splits:
            where = f"{root}" if split is None else f"{root} (split {split!r})"
            resolved = _resolve_or_raise(columns, list(dataset.column_names), where)
            feature = dataset.features[resolved.content]
            error = _hf_type_error(resolved.content, resolved.kind, feature)
            if error is not None:
                raise InvalidInputError(f"{where}: {error}")
            self.columns[split] = resolved

    def scan(self, *, load_content: bool = True) -> Iterator[Item]:
        ordinal = 0
        for split, dataset in self.splits:
            columns = self.columns[split]
            prefix = "" if split is None else f"{split}/"
            guard = _KeyGuard()
            raw = self._undecoded(dataset)
            row_no = 0
            for batch in raw.iter(batch_size=BATCH_ROWS):
                names = list(batch)
                for values in zip(*(batch[name] for name in names), strict=True):
                    row = dict(zip(names, values, strict=True))
                    default = f"{split}/{row_no}" if split is not None else f"row-{row_no}"
                    where = f"row {row_no}" if split is None else f"split {split!r} row {row_no}"
                    yield _keyed_row_item(
                        row,
                        columns,
                        guard,
                        default=default,
                        prefix=prefix,
                        ordinal=ordinal,
                        where=where,
                        base_dir=self.root,
                        record=(split, row_no),
                        max_bytes=self.max_item_bytes,
                        load=load_content,
                    )
                    ordinal += 1
                    row_no += 1

    @staticmethod
    def _undecoded(dataset: Any) -> Any:
        """The dataset as plain Python values with media features left as raw bytes."""
        plain = dataset.with_format(None)
        for name, feature in plain.features.items():
            is_instance = dataclasses.is_dataclass(feature) and not isinstance(feature, type)
            if is_instance and getattr(feature, "decode", False):
                plain = plain.cast_column(name, dataclasses.replace(feature, decode=False))
        return plain

    def count(self) -> int:
        return sum(int(dataset.num_rows) for _, dataset in self.splits)

    def underlying_files(self) -> list[tuple[str, Path]]:
        return list(_visible_tree(self.root))


# --- opening ----------------------------------------------------------------------------------


def _is_hf_dir(path: Path) -> bool:
    markers = ("dataset_dict.json", "state.json", "dataset_info.json")
    return any((path / marker).is_file() for marker in markers)


def _has_visible_file(path: Path) -> bool:
    return next(iter(_visible_tree(path)), None) is not None


def detect_format(path: Path) -> str:
    """The format of ``path`` by its shape and name (see the module docstring)."""
    if path.is_dir():
        if _is_hf_dir(path):
            return "hf"
        entries = [entry for entry in path.iterdir() if not entry.name.startswith(".")]
        if entries and all(e.is_file() and e.name.lower().endswith(".tar") for e in entries):
            return "webdataset"
        return "files"
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz")):
        return "jsonl"
    if name.endswith(".csv"):
        return "csv"
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith(".tar"):
        return "webdataset"
    raise InvalidInputError(f"{path}: unknown dataset format; supported: {_SUPPORTED}")


def open_source(
    path: Path,
    *,
    columns: ColumnMap | None = None,
    format: str | None = None,  # shadows the builtin on purpose: the CLI option's name
    max_item_bytes: int = DEFAULT_MAX_ITEM_BYTES,
) -> Source:
    """Open ``path`` as a :class:`Source`, detecting the format unless ``format`` is given.

    Raises :class:`~consentry.errors.InvalidInputError` for an unknown format, a missing or
    empty path, or columns that do not fit the data; ``columns`` apply to table formats
    (jsonl, csv, parquet, hf) and are refused for files and webdataset.
    """
    path = Path(path)
    if max_item_bytes <= 0:
        raise InvalidInputError(f"max_item_bytes must be positive, got {max_item_bytes}")
    if not path.exists():
        raise UnreadableInputError(f"{path}: no such file or directory")
    if format is not None and format not in FORMATS:
        raise InvalidInputError(f"unknown dataset format {format!r}; supported: {_SUPPORTED}")
    fmt = format or detect_format(path)
    if fmt in ("files", "hf") and not path.is_dir():
        raise InvalidInputError(f"{path}: format {fmt!r} needs a directory")
    if fmt in ("jsonl", "csv", "parquet") and not path.is_file():
        raise InvalidInputError(f"{path}: format {fmt!r} needs a file")
    if path.is_dir() and not _has_visible_file(path):
        raise InvalidInputError(f"{path}: empty directory, nothing to gate")
    spec = columns if columns is not None else ColumnMap()
    if fmt in ("files", "webdataset"):
        if spec != ColumnMap():
            raise InvalidInputError(f"{path}: column options apply to tables, not to {fmt}")
        if fmt == "files":
            return FilesSource(path, max_item_bytes=max_item_bytes)
        return WebDatasetSource(path, max_item_bytes=max_item_bytes)
    if fmt == "jsonl":
        return JsonlSource(path, spec, max_item_bytes=max_item_bytes)
    if fmt == "csv":
        return CsvSource(path, spec, max_item_bytes=max_item_bytes)
    if fmt == "parquet":
        return ParquetSource(path, spec, max_item_bytes=max_item_bytes)
    return HfSource(path, spec, max_item_bytes=max_item_bytes)


# --- chunks: how a run splits a source ----------------------------------------------------

DEFAULT_CHUNK_SIZE = 1024
"""Items per chunk (``--chunk-size``). Each chunk costs a file, an fsync and a row group; at
256, on 50,000 short texts, that was ~0.4 s (4 %) of a one-worker run; at 1,024 an
interrupted run still loses at most the few chunks in progress (~0.2 s of short texts, a few
seconds of images)."""
CHUNK_MAX_BYTES = 32 << 20
"""A chunk also ends once its items hold this much content in memory (sources that carry
the bytes themselves: Parquet, tar shards), so a chunk of images stays small."""


def _raw_bytes(raw: Item | RawRow) -> int:
    """Content bytes a raw item holds in memory: an item's data, a JSON line's bytes (a
    file's path, the raw row of a folder, counts as nothing; CSV fields are short)."""
    if isinstance(raw, Item):
        return len(raw.data) if raw.data is not None else 0
    row = raw[2]
    return len(row) if isinstance(row, bytes) else 0


def chunked(
    source: Source, size: int, max_bytes: int = CHUNK_MAX_BYTES
) -> Iterator[tuple[int, list[Item | RawRow]]]:
    """Consecutive items in chunks of ``size``, or fewer once they hold ``max_bytes`` of
    content (images inside a Parquet file or a tar shard): the same source always splits
    the same way, which is what ``--resume`` relies on."""
    batch: list[Item | RawRow] = []
    held = 0
    chunk_no = 0
    for raw in source.raw_items():
        batch.append(raw)
        held += _raw_bytes(raw)
        if len(batch) == size or held >= max_bytes:
            yield chunk_no, batch
            chunk_no, batch, held = chunk_no + 1, [], 0
    if batch:
        yield chunk_no, batch
