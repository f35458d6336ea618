"""Run folders: a name that cannot leave --out, an exclusive lock, and one writer per run.

    OUT/<cell>-<profile>-s<seed>/run.lock    "pid host" of the process that owns the folder

The lock is created with O_EXCL, so two runs into the same folder cannot both write (it happened:
two workers shared a /tmp folder); a lock whose pid is dead on this host is taken over.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from accelerate import Accelerator
from accelerate.utils import broadcast_object_list

from chimera.config import RunConfig
from chimera.errors import ChimeraError
from chimera.records import RECORD_NAME, load_record

LOCK = "run.lock"
_SAFE_RUN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def run_dir_for(config: RunConfig, out_dir: Path) -> Path:
    """OUT/<cell>-<profile>-s<seed>; names that could leave OUT (separators, "..") are refused."""
    name = f"{config.cell.replace('/', '-', 1)}-{config.profile}-s{config.seed}"
    if not _SAFE_RUN_NAME.fullmatch(name) or ".." in name:
        raise ChimeraError(f"cell {config.cell!r} / profile {config.profile!r}: not usable as a run folder name "
                           "(letters, digits, _ . - and one / in the cell)")
    return Path(out_dir) / name


@contextmanager
def own_run_dir(run_dir: Path, accelerator: Accelerator, *, resume: bool) -> Iterator[None]:
    """The main process locks the run folder for the whole run; every process learns if it cannot."""
    with ExitStack() as stack:
        problem = None
        if accelerator.is_main_process:
            try:
                stack.enter_context(run_lock(run_dir))
                _check_run_dir(run_dir, resume=resume)
            except ChimeraError as exc:
                problem = str(exc)
        if accelerator.num_processes > 1:
            problem = broadcast_object_list([problem])[0]
        if problem:
            raise ChimeraError(problem)
        yield


def _check_run_dir(run_dir: Path, *, resume: bool) -> None:
    if not (run_dir / RECORD_NAME).exists():
        return
    if not resume:
        raise ChimeraError(f"{run_dir}: already holds a record; use another --out or --resume {run_dir}")
    status = load_record(run_dir)["status"]
    if status in ("completed", "stopped_early"):
        raise ChimeraError(f"{run_dir}: that run finished ({status}); nothing to resume")


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Own `run_dir` for the duration: a second run into the same folder fails instead of both writing."""
    path = Path(run_dir) / LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    _acquire(path)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        try:
            path.parent.rmdir()  # a run that wrote nothing (bad input) leaves no empty folder behind
        except OSError:
            pass


def _acquire(path: Path) -> None:
    for _ in range(3):  # a stale lock is moved away, then O_EXCL decides between racing takers
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _read_owner(path)
            if owner is None or _alive(*owner):
                _in_use(path, owner)
            _take_over_stale(path)
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{os.getpid()} {socket.gethostname()}\n")
        return
    raise ChimeraError(f"{path}: could not take the run-folder lock (contended); try again")


def _take_over_stale(path: Path) -> None:
    """Move a dead owner's lock aside (rename: one winner); if what moved is live after all, put it back."""
    aside = path.with_name(f"{LOCK}.stale.{os.getpid()}")
    try:
        path.rename(aside)
    except FileNotFoundError:
        return  # another taker was faster
    owner = _read_owner(aside)
    if owner is not None and _alive(*owner):  # a racing taker's fresh lock, not the stale one
        try:
            os.link(aside, path)
        except FileExistsError:
            pass
        aside.unlink(missing_ok=True)
        _in_use(path, owner)
    aside.unlink(missing_ok=True)


def _in_use(path: Path, owner: tuple[int, str] | None) -> None:
    held = f"pid {owner[0]} on {owner[1]}" if owner else "another process"
    raise ChimeraError(f"{path.parent}: run folder is in use by {held}; wait for it, choose another --out, "
                       f"or delete {path} if that run is gone")


def _read_owner(path: Path) -> tuple[int, str] | None:
    try:
        pid, host = path.read_text(encoding="utf-8").split()
        return int(pid), host
    except (OSError, ValueError):  # gone meanwhile, or half-written by a process killed mid-create
        return None


def _alive(pid: int, host: str) -> bool:
    if host != socket.gethostname():
        return True  # cannot check a process on another machine: assume it is running
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True
