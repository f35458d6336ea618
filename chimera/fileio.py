"""The one place files are written atomically and JSON is read back (records, checkpoints, bands,
benchmark files, the tokenizer cache all go through it).

Writes go to a temp file in the same folder, are fsynced, then renamed over the target, so a crash
or a full disk leaves the previous file or none, never a truncated one. Reads turn every way a file
can be unusable into one ChimeraError line naming the file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
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
