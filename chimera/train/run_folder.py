"""Run folders: a name that cannot leave --out, an exclusive lock, and one writer per run.

    OUT/<cell>-<profile>-s<seed>/run.lock    flocked by the process that owns the folder

Two runs into the same folder cannot both write (it happened: two workers shared a /tmp folder).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from accelerate import Accelerator
from accelerate.utils import broadcast_object_list
from filelock import FileLock, Timeout

from chimera.config import RunConfig
from chimera.errors import ChimeraError
from chimera.records.store import RECORD_NAME, load_record

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
    status = load_record(run_dir).status
    if status in ("completed", "stopped_early"):
        raise ChimeraError(f"{run_dir}: that run finished ({status}); nothing to resume")


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Own `run_dir` for the duration: a second run into the same folder fails instead of both writing.

    An flock (filelock) on run.lock: the kernel drops it when its process dies, however it dies, so a
    crashed run never leaves a lock to take over and no pid has to be checked for liveness.
    """
    path = Path(run_dir) / LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise ChimeraError(f"{path.parent}: run folder is in use by another process (it holds {path}); wait for "
                           "it or choose another --out") from None
    try:
        yield
    finally:
        path.unlink(missing_ok=True)  # while still held: nobody can take a lock on the old file after us
        lock.release()
        try:
            path.parent.rmdir()  # a run that wrote nothing (bad input) leaves no empty folder behind
        except OSError:
            pass
