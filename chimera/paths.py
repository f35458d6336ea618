"""The kinds of path a command argument can be, and the one check that runs before any work starts.

The command table (chimera/commands.py) gives each path argument its kind (a folder or file to read, a
folder or file to write); `check_path` turns a missing path, the wrong kind (a file where a folder is
expected and back), an unreadable or an unwritable one into a one-line ChimeraError (exit 2). Nothing
is created while checking, so a refused command leaves nothing behind.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from chimera.errors import ChimeraError


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
