"""Reading the user's files: walking directories and loading bytes with clear errors."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from consentry.errors import UnreadableInputError

__all__ = ["FileProblem", "iter_files", "read_file"]


@dataclass(frozen=True, slots=True)
class FileProblem:
    """A path given on the command line that is not a readable file or directory."""

    path: Path
    message: str


def iter_files(paths: Iterable[str | Path]) -> Iterator[Path | FileProblem]:
    """Files named, and files under directories named (recursively, sorted, hidden skipped).

    Symlinked directories are not followed, so a link loop cannot make the walk endless.
    Missing paths are yielded as :class:`FileProblem` so that a batch can go on.
    """
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for root, dirs, names in os.walk(path, followlinks=False):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(names):
                    if not name.startswith("."):
                        yield Path(root) / name
        elif path.exists():
            yield path
        else:
            yield FileProblem(path, "no such file or directory")


def read_file(path: Path, max_bytes: int) -> bytes:
    """The file's bytes; refuses empty, oversized, unreadable and non-regular files."""
    try:
        if not path.is_file():
            raise UnreadableInputError(f"{path}: not a regular file")
        size = path.stat().st_size
        if size == 0:
            raise UnreadableInputError(f"{path}: empty file")
        if size > max_bytes:
            raise UnreadableInputError(
                f"{path}: {size} bytes is over the limit of {max_bytes} (CONSENTRY_MAX_FILE_BYTES)"
            )
        with path.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise UnreadableInputError(f"{path}: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise UnreadableInputError(f"{path}: grew past the size limit while being read")
    if not data:
        raise UnreadableInputError(f"{path}: empty file")
    return data
