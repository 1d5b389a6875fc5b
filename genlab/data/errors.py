"""The one error a user sees when a dataset file is missing, corrupt or unreadable.

Every failure to find, verify or parse a dataset file becomes a ``DatasetError``
whose message is enough to fix the problem without reading code: which file,
what checksum it should have, which folder it belongs in, where the official
copy lives, and the three ways to point genlab at data (``--set
data.download=true``, ``--data-root DIR``, ``GENLAB_DATA=DIR``). Parser
exceptions are caught and re-raised as a ``DatasetError`` naming the file, so
users never see a traceback from inside numpy, gzip, pickle or Pillow.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from genlab.errors import UserError

HOW_TO_FIX = (
    "to fix: put the file there yourself, or run with --set data.download=true to fetch it, "
    "or point genlab at a folder that has it with --data-root DIR (or GENLAB_DATA=DIR)"
)


class DatasetError(UserError):
    """A dataset cannot be loaded; the message says which file and what to do.

    Attributes:
        path: the file (or folder) at fault, when there is one.
        expected: the checksum the file should have ("md5:<hex>"), when known.
        kind: "missing", "corrupt" (wrong checksum), "unreadable" (parse failure) or "other".
    """

    def __init__(self, message: str, path: Path | str | None = None, expected: str | None = None,
                 kind: str = "other", reason: str = ""):
        super().__init__(message)
        self.path = None if path is None else Path(path)
        self.expected = expected
        self.kind = kind
        self.reason = reason or message


def _checksum_words(checksum: str) -> str:
    """"md5:abc" -> "md5: abc"."""
    algo, _, digest = checksum.partition(":")
    return f"{algo}: {digest}"


def _where(path: Path, expected: str | None, urls: Sequence[str]) -> list[str]:
    lines = []
    if expected:
        lines.append(f"  expected {_checksum_words(expected)}")
    lines.append(f"  put the official file in: {path.parent}")
    if urls:
        lines.append(f"  official URL: {urls[0]}")
        lines.extend(f"  mirror: {u}" for u in urls[1:])
    lines.append("  " + HOW_TO_FIX)
    return lines


def missing_file(path: Path, expected: str | None, urls: Sequence[str], also: Sequence[Path] = ()) -> DatasetError:
    """The file (and each accepted alternative form of it) is absent."""
    head = f"dataset file not found: {path}"
    if also:
        head += " (also looked for " + ", ".join(str(p) for p in also) + ")"
    return DatasetError("\n".join([head, *_where(path, expected, urls)]), path, expected, "missing")


def corrupt_file(path: Path, expected: str, actual: str, urls: Sequence[str]) -> DatasetError:
    """The file exists but its checksum is not the official one."""
    head = f"dataset file is corrupt or not the official version: {path}"
    found = f"its {_checksum_words(actual)}" if re.fullmatch(r"(md5|sha256):[0-9a-f]+", actual) else actual
    lines = [head, f"  {found}", *_where(path, expected, urls)]
    lines.insert(-1, "  delete or replace it (a partial download or an edited copy gives this)")
    return DatasetError("\n".join(lines), path, expected, "corrupt")


def unreadable_file(path: Path, reason: str, expected: str | None = None, urls: Sequence[str] = ()) -> DatasetError:
    """The file could not be parsed; ``reason`` is the parser's complaint in words."""
    lines = [f"cannot read dataset file {path}: {reason}"]
    if expected or urls:
        lines.extend(_where(path, expected, urls))
    return DatasetError("\n".join(lines), path, expected, "unreadable", reason)


def describe(err: BaseException) -> str:
    """``TypeName: message`` of a low-level exception, for wrapping into a DatasetError."""
    text = str(err).strip()
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


@contextmanager
def parsing(path: Path | str, expected: str | None = None, urls: Sequence[str] = ()) -> Iterator[None]:
    """Turn any failure while parsing ``path`` into a DatasetError that names it.

    A DatasetError raised inside that lacks the checksum and URL is re-raised
    with them; any other exception (numpy, pickle, zlib, Pillow...) becomes an
    "unreadable" DatasetError carrying the original message, without the traceback.
    """
    try:
        yield
    except DatasetError as err:
        if err.kind == "unreadable" and err.expected is None and (expected or urls):
            raise unreadable_file(err.path or Path(path), err.reason, expected, urls) from None
        raise
    except MemoryError:
        raise  # not a property of the file
    except Exception as err:
        raise unreadable_file(Path(path), describe(err), expected, urls) from None
