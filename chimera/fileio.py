"""The one place files are written atomically and JSON is read back (records, checkpoints, bands, benchmark
files, the tokenizer cache all go through it), and where path arguments are checked.

Writes go to a temp file in the same folder, are fsynced, then renamed over the target, so a crash
or a full disk leaves the previous file or none, never a truncated one. Reads turn every way a file
can be unusable into one ChimeraError line naming the file.

Paths given on the command line are checked here too, before any work starts: the command table
(chimera/commands.py) gives each path argument its kind (a folder or file to read, a folder or file to
write), and `check_path` turns a missing path, the wrong kind (a file where a folder is expected and back),
an unreadable or an unwritable one into a one-line ChimeraError (exit 2). Nothing is created while
checking, so a refused command leaves nothing behind.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chimera.errors import ChimeraError

# Test-only fault injection: called between writing the temp file and renaming it into place.
_before_replace: Callable[[Path], None] | None = None


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` so readers see either the old file or the complete new one."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, raw: bytes) -> None:
    """Temp file in the same folder, fsync, then os.replace. The file gets the permissions a plain
    `open(path, "w")` would (0666 minus the umask), not mkstemp's private 0600: records are shared."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        if _before_replace is not None:
            _before_replace(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it is to set it
    os.umask(mask)
    return mask


def read_json(path: Path, what: str, *, missing: str = "", fix: str = "") -> Any:
    """Parsed JSON of `path`; a one-line ChimeraError naming the file when it is absent or unreadable.

    `what` names the kind of file in the message ("record", "bands file", ...); `missing` replaces the
    default "no such <what>" with advice on how to make one; `fix` says what to do about a damaged one.
    """
    advice = f"; {fix}" if fix else ""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ChimeraError(f"{path}: {missing or f'no such {what}'}") from None
    except IsADirectoryError:
        raise ChimeraError(f"{path}: is a folder, not a {what}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ChimeraError(f"{path}: not a readable JSON {what} ({exc}){advice}") from None


_CSV_FIELD_LIMIT = 2**31 - 1  # the stdlib reader's default of 128 KiB would turn one long article into an error


@contextmanager
def long_csv_fields() -> Iterator[None]:
    """Lift the stdlib csv reader's (process-wide) field size limit for the duration of a scan."""
    previous = csv.field_size_limit(_CSV_FIELD_LIMIT)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


# --- path arguments -------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class PathKind:
    """What a path argument must be."""

    noun: str  # "folder", "file" or "file or folder", for the messages
    write: bool  # written to (created if absent, under a writable folder) rather than read
    folder: bool | None  # True a folder, False a file, None either
    must_exist: bool = False  # only for write kinds: the folder is read back too (--resume)


READ_DIR = PathKind(noun="folder", write=False, folder=True)
READ_FILE = PathKind(noun="file", write=False, folder=False)
READ_ANY = PathKind(noun="file or folder", write=False, folder=None)
WRITE_DIR = PathKind(noun="folder", write=True, folder=True)
WRITE_FILE = PathKind(noun="file", write=True, folder=False)
EXISTING_WRITE_DIR = PathKind(noun="folder", write=True, folder=True, must_exist=True)


def check_path(path: Path, *, flag: str, kind: PathKind, role: str) -> None:
    """Raise ChimeraError when `path`, given as `flag` (what it is for: `role`), cannot be used as `kind`."""
    where, hint = f"{flag} {path}", f" ({role})"
    if not os.path.lexists(path):
        if not kind.write or kind.must_exist:
            raise ChimeraError(f"{where}: no such {kind.noun}{hint}")
        parent = _nearest_existing(path.parent)
        if not parent.is_dir():
            raise ChimeraError(f"{where}: cannot create it: {parent} is a file, not a folder")
        if not _allowed(parent, os.W_OK | os.X_OK):
            raise ChimeraError(f"{where}: cannot create it: {parent} is not writable (choose another {flag})")
        return
    if kind.folder is True and not path.is_dir():
        raise ChimeraError(f"{where}: is a file, not a folder{hint}")
    if kind.folder is False and path.is_dir():
        raise ChimeraError(f"{where}: is a folder, not a file{hint}")
    if not path.is_dir() and not path.is_file():
        raise ChimeraError(f"{where}: is neither a file nor a folder{hint}")
    read = os.R_OK | (os.X_OK if path.is_dir() else 0)
    if not _allowed(path, read):
        raise ChimeraError(f"{where}: not readable (check its permissions){hint}")
    if kind.write and not _allowed(path, os.W_OK | (os.X_OK if path.is_dir() else 0)):
        raise ChimeraError(f"{where}: not writable (check its permissions or choose another {flag})")


def _nearest_existing(path: Path) -> Path:
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def _allowed(path: Path, mode: int) -> bool:
    """os.access, a seam for tests: root passes every permission check, so tests stand in for it."""
    return os.access(path, mode)
