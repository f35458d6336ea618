"""The Python API: what `chimera train` and `chimera matrix` do, as functions that return typed run records.

    import chimera
    config = chimera.resolve_config("fixed/dense", "ci", seed=0, overrides=["train.max_steps=100"])
    record = chimera.train_config(config, out_dir="runs", data_dir="path/to/ag_news")   # -> RunRecord
    records = chimera.train_matrix("ci", cells=["fixed/dense"], seeds=(0, 1), out_dir="runs/ci")

`chimera train` and `chimera matrix` are `run_train` and `run_matrix` at the end of this module: their flags
turned into calls of these same functions, so a script and the command line share one code path: the same
checks, plans, run folders and records. The names are not `chimera.train(...)`: chimera.train is the trainer's
package, and importing any of its modules binds that name on the package, which would shadow a function of the
same name. Torch and the trainer are imported on the first call, never by `import chimera`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from chimera.config import AG_NEWS, RunConfig
from chimera.errors import EXIT_FAILED, EXIT_INTERRUPTED, ChimeraError
from chimera.matrix import Matrix, load_matrix

if TYPE_CHECKING:
    from chimera.records.record import RunRecord
    from chimera.train.plan import RunPlan

DATA_ENV = "CHIMERA_DATA_DIR"
FINISHED = ("completed", "stopped_early")
log = logging.getLogger("chimera")


def resolve_config(cell: str, profile: str = "ci", *, seed: int = 0, device: str = "auto",
                   overrides: Iterable[str] = (), matrix: Path | str | None = None) -> RunConfig:
    """The validated config of one matrix cell (or ablation variant) under `profile`, `--set`-style `overrides` last.

    `matrix`: a matrix TOML file; default: the packaged chimera/matrix.toml."""
    return _matrix(matrix).resolve(cell, profile, seed=seed, device=device, overrides=list(overrides))


def train_config(config: RunConfig, *, out_dir: Path | str = "runs", data_dir: Path | str | None = None,
                 cache_dir: Path | str | None = None, resume: Path | str | None = None, quiet: bool = True,
                 log_with: Sequence[str] = ()) -> RunRecord:
    """Train `config` into OUT_DIR/<cell>-<profile>-s<seed>/ and return its record (also written there as record.json).

    `data_dir`: AG News' local copy; None: $CHIMERA_DATA_DIR, else the Hugging Face hub (another data.dataset
    is read from where it names). `resume`: the run folder of an interrupted run of this config to continue
    (`out_dir` is then its parent). `log_with`: accelerate tracker names. The record's status is completed,
    stopped_early or interrupted; bad input raises ChimeraError before any work, and a run that fails writes a
    `failed` record and raises RunFailed (a ChimeraError)."""
    data, trackers = data_folder(data_dir, dataset=config.data.dataset), _trackers(log_with)
    plan = _plan(config, Path(resume).parent if resume is not None else Path(out_dir))
    if resume is not None and plan.run_dir.resolve() != Path(resume).resolve():
        raise ChimeraError(f"--resume {resume}: it is not the run folder of {config.cell} "
                           f"seed {config.seed} profile {config.profile}")
    return _train(plan, data_dir=data, cache_dir=cache_dir, quiet=quiet, resume=resume is not None, log_with=trackers)


def train_matrix(profile: str = "ci", *, cells: Iterable[str] | None = None, seeds: Iterable[int] = (0,),
                 ablation: str | None = None, out_dir: Path | str = "runs", data_dir: Path | str | None = None,
                 overrides: Iterable[str] = (), device: str = "auto", matrix: Path | str | None = None,
                 cache_dir: Path | str | None = None, quiet: bool = True, log_with: Sequence[str] = (),
                 on_failure: Callable[[RunConfig, ChimeraError], None] | None = None) -> list[RunRecord]:
    """Train every cell of `profile` (only `cells`, if given; with `ablation=BASE`, BASE's ablation family)
    once per seed, seed-major, and return their records in that order.

    Every run is planned before the first one trains, so a typo or a precision this machine cannot run
    fails at once (ChimeraError). A run that fails does not stop the others: `on_failure(config, error)` is
    told (default: a log line) and its `failed` record is in the list when it wrote one. An interrupted
    run (Ctrl-C, SIGTERM) ends the matrix: its record, status interrupted, is the last in the list."""
    seeds, chosen = list(seeds), None if cells is None else list(cells)
    if not seeds:
        raise ChimeraError("seeds: give at least one")
    if len(set(seeds)) != len(seeds):
        raise ChimeraError(f"--seeds {' '.join(map(str, seeds))}: a seed is repeated")
    trackers = _trackers(log_with)
    configs = _matrix_configs(_matrix(matrix), profile, cells=chosen, seeds=seeds, ablation=ablation,
                              device=device, overrides=list(overrides))
    data = {config.data.dataset: data_folder(data_dir, dataset=config.data.dataset) for config in configs}
    plans = [_plan(config, Path(out_dir)) for config in configs]
    records: list[RunRecord] = []
    for plan in plans:
        record = _train_going_on(plan, data_dir=data[plan.config.data.dataset], cache_dir=cache_dir, quiet=quiet,
                                 log_with=trackers, on_failure=on_failure or _log_failure)
        records += [record] if record is not None else []
        if record is not None and record.status == "interrupted":  # Ctrl-C / SIGTERM stops the whole matrix
            log.info("matrix %s: interrupted during %s; resume it with train --resume", profile, plan.config.cell)
            return records
    finished = sum(record.status in FINISHED for record in records)
    log.info("matrix %s: %d of %d cells ok", profile, finished, len(plans))
    return records


def data_folder(value: Path | str | None, *, flag: str = "data_dir", dataset: str = AG_NEWS) -> Path | None:
    """AG News' local copy: `value`, else $CHIMERA_DATA_DIR, else None (the Hugging Face hub); a folder that is
    not there is refused. Another `dataset` is read from where data.dataset names: the variable is not its
    data, and a `value` given beside it is refused rather than ignored."""
    if dataset != AG_NEWS:
        if value:
            raise ChimeraError(f"{flag} {value}: it names AG News' local copy; data.dataset={dataset} names the data "
                               "to read (leave it out)")
        return None
    raw = value or os.environ.get(DATA_ENV) or None
    if raw is None:
        return None
    path = Path(raw).expanduser()
    if not path.is_dir():
        source = flag if value else f"${DATA_ENV}"
        raise ChimeraError(f"{source} {raw}: no such folder (it must hold train and test files)")
    return path


def summary_line(record: RunRecord, run_dir: Path) -> str:
    """The line a finished run logs; a metric the run did not measure is `n/a`, never 0 or nan."""
    m = record.final_metrics

    def value(number: float | None, spec: str) -> str:
        return "n/a" if number is None else format(number, spec)

    return (f"{record.cell}: {record.status} at step {m.steps}; clean train loss {value(m.clean_train_loss, '.4f')}, "
            f"val loss {value(m.val_loss, '.4f')}, val acc {value(m.val_acc, '.3f')}, "
            f"test acc {value(m.test_acc, '.3f')} -> {run_dir / 'record.json'}")


def _matrix(path: Path | str | None) -> Matrix:
    return load_matrix(path)


def _trackers(names: Sequence[str]) -> tuple[str, ...]:
    """Tracker names checked before any work (an unknown or uninstalled one is a ChimeraError)."""
    if not names:
        return ()
    from chimera.train.tracking import check_log_with

    return check_log_with(list(names))


def _matrix_configs(matrix: Matrix, profile: str, *, cells: list[str] | None, seeds: list[int],
                    ablation: str | None, device: str, overrides: list[str]) -> list[RunConfig]:
    """The matrix's cells (or BASE's ablation family), `cells` of them if given, for each seed in turn."""
    configs = []
    for seed in seeds:
        if ablation:
            family = matrix.ablation(ablation, profile, seed=seed, device=device, overrides=overrides)
        else:
            family = [matrix.resolve(c, profile, seed=seed, device=device, overrides=overrides) for c in matrix.cells]
        names = [config.cell for config in family]
        for cell in cells or ():
            if cell not in names:
                raise ChimeraError(f"--cells {cell}: not one of {', '.join(names)}")
        configs += [config for config in family if not cells or config.cell in cells]
    return configs


def _plan(config: RunConfig, out_dir: Path) -> RunPlan:
    from chimera.train.plan import make_plan

    return make_plan(config, out_dir=Path(out_dir))


def _train(plan: RunPlan, *, data_dir: Path | None, cache_dir: Path | str | None, quiet: bool, resume: bool,
           log_with: tuple[str, ...]) -> RunRecord:
    from chimera.train.run import run_plan

    record = run_plan(plan, data_dir=data_dir, cache_dir=Path(cache_dir) if cache_dir is not None else None,
                      quiet=quiet, resume=resume, log_with=log_with)
    log.info("%s", summary_line(record, plan.run_dir))
    return record


def _train_going_on(plan: RunPlan, *, data_dir: Path | None, cache_dir: Path | str | None, quiet: bool,
                    log_with: tuple[str, ...],
                    on_failure: Callable[[RunConfig, ChimeraError], None]) -> RunRecord | None:
    """One run of a matrix: its record, or its failed record (None if it wrote none) after telling `on_failure`."""
    from chimera.records.store import RECORD_NAME, load_record

    path = plan.run_dir / RECORD_NAME
    existed = path.exists()  # then the run refuses to start and the record there is not this run's
    try:
        return _train(plan, data_dir=data_dir, cache_dir=cache_dir, quiet=quiet, resume=False, log_with=log_with)
    except ChimeraError as exc:
        on_failure(plan.config, exc)
    return load_record(path) if path.exists() and not existed else None


def _log_failure(config: RunConfig, error: ChimeraError) -> None:
    log.error("%s seed %d: %s", config.cell, config.seed, error)


# --- the train and matrix commands: their flags turned into the calls above ------------------------------


def run_train(args: argparse.Namespace) -> int:
    """`chimera train`: one cell, or the run folder --resume names (through `train_config`, as a script would)."""
    from chimera.train.recipe import RunFailed

    overrides = _with_precision(args.overrides, args.precision)
    config = resolve_config(args.cell, args.profile, seed=args.seed, device=args.device, overrides=overrides,
                           matrix=args.matrix)
    try:
        record = train_config(config, out_dir=args.out, data_dir=args.data_dir, cache_dir=args.cache_dir,
                              resume=args.resume, quiet=args.quiet, log_with=args.log_with)
    except RunFailed as exc:
        print(f"chimera: run failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_INTERRUPTED if record.status == "interrupted" else 0


def run_matrix(args: argparse.Namespace) -> int:
    """`chimera matrix`: every cell (or BASE's ablation family) per seed; goes on past a failed cell."""
    from chimera.train.recipe import RunFailed

    if args.seeds is not None and args.seed != 0:
        raise ChimeraError("give --seed or --seeds, not both")
    failures = []

    def say(config, exc: ChimeraError) -> None:
        failures.append(config)
        print(f"chimera: run failed: {exc}" if isinstance(exc, RunFailed) else f"chimera: error: {config.cell}: {exc}",
              file=sys.stderr)

    records = train_matrix(
        args.profile, cells=args.cells, seeds=args.seeds if args.seeds is not None else [args.seed],
        ablation=args.ablation, out_dir=args.out, data_dir=args.data_dir,
        overrides=_with_precision(args.overrides, args.precision), device=args.device, matrix=args.matrix,
        cache_dir=args.cache_dir, quiet=args.quiet, log_with=args.log_with, on_failure=say)
    if records and records[-1].status == "interrupted":
        return EXIT_INTERRUPTED
    return EXIT_FAILED if failures else 0


def _with_precision(overrides: list[str], precision: str | None) -> list[str]:
    """--precision P is --set train.precision=P; both given and different is ambiguous, so refused."""
    if precision is None:
        return overrides
    from chimera.config import parse_assignment
    for text in overrides:
        section, key, value = parse_assignment(text)
        if (section, key) == ("train", "precision") and value != precision:
            raise ChimeraError(f"--precision {precision} and --set {text} disagree; give one of them")
    return [*overrides, f"train.precision={precision}"]
