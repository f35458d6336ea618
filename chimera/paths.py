"""Every path argument of every command, checked before any work starts.

One table says what each argument must be (a folder or file to read, a folder or file to write); one
check turns a missing path, the wrong kind (a file where a folder is expected and back), an unreadable
or an unwritable one into a one-line ChimeraError (exit 2). Nothing is created while checking, so a
refused command leaves nothing behind.
"""

from __future__ import annotations

import argparse
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


READ_DIR = PathKind(noun="folder", write=False, folder=True)
READ_FILE = PathKind(noun="file", write=False, folder=False)
READ_ANY = PathKind(noun="file or folder", write=False, folder=None)
WRITE_DIR = PathKind(noun="folder", write=True, folder=True)
WRITE_FILE = PathKind(noun="file", write=True, folder=False)


@dataclass(frozen=True, kw_only=True)
class PathArgument:
    dest: str  # attribute on the parsed namespace (a list for nargs="+")
    flag: str  # as the user typed it: "--out", or the metavar of a positional
    kind: PathKind
    role: str  # what it is for, in the message
    must_exist: bool = False  # only for write kinds: the folder is read back too (--resume)


# Arguments several run commands share.
_DATA_DIR = PathArgument(dest="data_dir", flag="--data-dir", kind=READ_DIR, role="AG News train and test files")
_MATRIX = PathArgument(dest="matrix", flag="--matrix", kind=READ_FILE, role="the matrix TOML")
_RUNS_OUT = PathArgument(dest="out", flag="--out", kind=WRITE_DIR, role="run folders go here")
_CACHE_DIR = PathArgument(dest="cache_dir", flag="--cache-dir", kind=WRITE_DIR, role="the tokenizer cache")

PATH_ARGUMENTS: dict[str, tuple[PathArgument, ...]] = {
    "train": (
        _DATA_DIR, _MATRIX,
        PathArgument(dest="resume", flag="--resume", kind=WRITE_DIR, role="the run folder to continue",
                     must_exist=True),
        _RUNS_OUT, _CACHE_DIR,
    ),
    "matrix": (_DATA_DIR, _MATRIX, _RUNS_OUT, _CACHE_DIR),
    "reproduce": (
        PathArgument(dest="record", flag="RECORD.json", kind=READ_FILE, role="the run record to rerun"),
        _DATA_DIR,
        PathArgument(dest="out", flag="--out", kind=WRITE_DIR, role="the new run folder goes here"),
        _CACHE_DIR,
    ),
    "doctor": (
        PathArgument(dest="paths", flag="RECORD.json|RUN_DIR", kind=READ_ANY, role="records to diagnose"),
        PathArgument(dest="data_dir", flag="--data-dir", kind=READ_DIR, role="AG News for the leakage rescan"),
    ),
    "report": (
        PathArgument(dest="run_dir", flag="RUN_DIR", kind=READ_DIR, role="folder of run records"),
        PathArgument(dest="bench_dir", flag="--bench-dir", kind=READ_DIR, role="pytest-benchmark results"),
        PathArgument(dest="history", flag="--history", kind=READ_FILE, role="the history store to draw"),
        PathArgument(dest="out", flag="--out", kind=WRITE_DIR, role="the report goes here"),
    ),
    "bench": (
        PathArgument(dest="new", flag="NEW.json", kind=READ_FILE, role="pytest-benchmark JSON to check"),
        PathArgument(dest="baseline", flag="BASELINE.json", kind=READ_FILE, role="pytest-benchmark baseline"),
        PathArgument(dest="markdown", flag="--markdown", kind=WRITE_FILE, role="the markdown table is appended"),
    ),
    "bands": (
        PathArgument(dest="paths", flag="RUN_DIR", kind=READ_ANY, role="multi-seed run records"),
        PathArgument(dest="out", flag="--out", kind=WRITE_FILE, role="the bands JSON to write"),
    ),
    "history": (
        PathArgument(dest="paths", flag="FILE_OR_FOLDER", kind=READ_ANY, role="results to add to the history"),
        PathArgument(dest="store", flag="--store", kind=WRITE_FILE, role="the history store"),
        PathArgument(dest="bands", flag="--bands", kind=READ_FILE, role="the bands JSON"),
    ),
    "check-bands": (
        PathArgument(dest="paths", flag="RUN_DIR", kind=READ_ANY, role="run records to check"),
        PathArgument(dest="bands", flag="--bands", kind=READ_FILE, role="the bands JSON"),
    ),
}


def check_path_arguments(args: argparse.Namespace) -> None:
    """Raise ChimeraError for the first path argument of `args.command` that cannot be used as declared."""
    for argument in PATH_ARGUMENTS.get(args.command, ()):
        value = getattr(args, argument.dest, None)
        if value is None:
            continue
        for path in value if isinstance(value, list) else [value]:
            check_path(Path(path).expanduser(), argument)


def check_path(path: Path, argument: PathArgument) -> None:
    kind, where = argument.kind, f"{argument.flag} {path}"
    hint = f" ({argument.role})"
    if not os.path.lexists(path):
        if not kind.write or argument.must_exist:
            raise ChimeraError(f"{where}: no such {kind.noun}{hint}")
        parent = _nearest_existing(path.parent)
        if not parent.is_dir():
            raise ChimeraError(f"{where}: cannot create it: {parent} is a file, not a folder")
        if not _allowed(parent, os.W_OK | os.X_OK):
            raise ChimeraError(f"{where}: cannot create it: {parent} is not writable (choose another {argument.flag})")
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
        raise ChimeraError(f"{where}: not writable (check its permissions or choose another {argument.flag})")


def _nearest_existing(path: Path) -> Path:
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def _allowed(path: Path, mode: int) -> bool:
    """os.access, a seam for tests: root passes every permission check, so tests stand in for it."""
    return os.access(path, mode)
