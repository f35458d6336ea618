"""The handlers of the commands whose library code takes no parsed namespace: train, matrix, reproduce, env
and tables. chimera/commands.py names each one; chimera/cli.py imports this module only when one of them runs,
and each imports what it needs (torch, the trainer) inside, so nothing here loads before it is used.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import chimera
from chimera.errors import EXIT_FAILED, EXIT_INTERRUPTED, ChimeraError

DATA_ENV = "CHIMERA_DATA_DIR"
log = logging.getLogger("chimera")


def run_train(args: argparse.Namespace) -> int:
    """`chimera train`: one cell, or the run folder --resume names."""
    from chimera.train.plan import make_plan

    matrix, data_dir, overrides = _run_inputs(args)
    config = matrix.resolve(args.cell, args.profile, seed=args.seed, device=args.device, overrides=overrides)
    plan = make_plan(config, out_dir=args.resume.parent if args.resume else args.out)
    if args.resume and plan.run_dir.resolve() != args.resume.resolve():
        raise ChimeraError(f"--resume {args.resume}: it is not the run folder of {args.cell} "
                           f"seed {args.seed} profile {args.profile}")
    return _train_one(plan, data_dir, args, resume=bool(args.resume))


def run_matrix(args: argparse.Namespace) -> int:
    """`chimera matrix`: every cell (or BASE's ablation family) per seed; goes on past a failed cell."""
    from chimera.train.plan import make_plan

    matrix, data_dir, overrides = _run_inputs(args)
    # every plan first: a typo, or a precision or step mode this hardware cannot run, fails before an hour of
    # training
    plans = [make_plan(config, out_dir=args.out) for config in _matrix_configs(matrix, args, overrides)]
    codes = []
    for plan in plans:
        try:
            codes.append(_train_one(plan, data_dir, args, resume=False))
        except ChimeraError as exc:
            print(f"chimera: error: {plan.config.cell}: {exc}", file=sys.stderr)
            codes.append(EXIT_FAILED)
        if codes[-1] == EXIT_INTERRUPTED:  # Ctrl-C / SIGTERM stops the whole matrix, not just one cell
            log.info("matrix %s: interrupted during %s; resume it with train --resume", args.profile,
                     plan.config.cell)
            return EXIT_INTERRUPTED
    log.info("matrix %s: %d of %d cells ok", args.profile, codes.count(0), len(codes))
    return 0 if all(code == 0 for code in codes) else EXIT_FAILED


def run_reproduce(args: argparse.Namespace) -> int:
    from chimera.reproduce import reproduce_main

    return reproduce_main(args.record, out_dir=args.out, data_dir=_data_dir(args.data_dir), cache_dir=args.cache_dir,
                          quiet=args.quiet, out=sys.stdout)


def run_env(args: argparse.Namespace) -> int:
    from chimera.train.device import (
        ACCELERATE_ENV,
        describe_environment,
        native_precisions,
        probe_device,
        resolve_precision,
    )

    info = probe_device("auto")
    choice = resolve_precision("auto", os.environ.get(ACCELERATE_ENV))
    policy = choice.policy_for(info)
    native, not_native = native_precisions(info)
    print(json.dumps({"environment": describe_environment(info, policy).to_json(), "policy": vars(policy),
                      "precision": choice.record(policy).to_json(), "native_precisions": native,
                      "not_native": not_native}, indent=2))
    return 0


def run_tables_check(args: argparse.Namespace) -> int:
    """`chimera tables check`: each generated table that differs from its sources, one line each; 1 if any."""
    from chimera.analysis.doc_tables import check_tables

    problems = check_tables(_repository())
    for problem in problems:
        print(problem)
    return EXIT_FAILED if problems else 0


def run_tables_write(args: argparse.Namespace) -> int:
    """`chimera tables write`: regenerate the tables; print the name of each table whose text changed."""
    from chimera.analysis.doc_tables import write_tables

    for name in write_tables(_repository()):
        print(name)
    return 0


def summary_line(record, run_dir: Path) -> str:
    """The line a finished run logs; a metric the run did not measure is `n/a`, never 0 or nan."""
    m = record.final_metrics

    def value(number: float | None, spec: str) -> str:
        return "n/a" if number is None else format(number, spec)

    return (f"{record.cell}: {record.status} at step {m.steps}; clean train loss {value(m.clean_train_loss, '.4f')}, "
            f"val loss {value(m.val_loss, '.4f')}, val acc {value(m.val_acc, '.3f')}, "
            f"test acc {value(m.test_acc, '.3f')} -> {run_dir / 'record.json'}")


def _repository() -> Path:
    return Path(chimera.__file__).resolve().parents[1]


def _data_dir(value: str | None) -> Path | None:
    """--data-dir, else $CHIMERA_DATA_DIR, else None (the Hugging Face hub)."""
    raw = value or os.environ.get(DATA_ENV) or None
    if raw is None:
        return None
    path = Path(raw).expanduser()
    if not path.is_dir():
        source = "--data-dir" if value else f"${DATA_ENV}"
        raise ChimeraError(f"{source} {raw}: no such folder (it must hold train and test files)")
    return path


def _run_inputs(args: argparse.Namespace):
    """The matrix, the data folder and the overrides of a run command, each checked before any work."""
    from chimera.matrix import load_matrix

    matrix = load_matrix(args.matrix)
    data_dir = _data_dir(args.data_dir)
    overrides = _with_precision(args.overrides, args.precision)
    if args.log_with:  # a tracker that is unknown or not installed: exit 2 before any work
        from chimera.train.tracking import check_log_with
        args.log_with = check_log_with(args.log_with)
    return matrix, data_dir, overrides


def _matrix_configs(matrix, args, overrides: list[str]) -> list:
    """What `chimera matrix` trains: the matrix's cells or BASE's ablation family, for each seed in turn."""
    if args.seeds is not None and args.seed != 0:
        raise ChimeraError("give --seed or --seeds, not both")
    seeds = args.seeds if args.seeds is not None else [args.seed]
    if len(set(seeds)) != len(seeds):
        raise ChimeraError(f"--seeds {' '.join(map(str, seeds))}: a seed is repeated")
    configs = []
    for seed in seeds:
        if args.ablation:
            family = matrix.ablation(args.ablation, args.profile, seed=seed, device=args.device, overrides=overrides)
        else:
            family = [matrix.resolve(c, args.profile, seed=seed, device=args.device, overrides=overrides)
                      for c in matrix.cells]
        names = [config.cell for config in family]
        for cell in args.cells or ():
            if cell not in names:
                raise ChimeraError(f"--cells {cell}: not one of {', '.join(names)}")
        configs += [config for config in family if not args.cells or config.cell in args.cells]
    return configs


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


def _train_one(plan, data_dir: Path | None, args, *, resume: bool) -> int:
    from chimera.train.recipe import RunFailed
    from chimera.train.run import run_plan

    try:
        record = run_plan(plan, data_dir=data_dir, cache_dir=args.cache_dir, quiet=args.quiet, resume=resume,
                          log_with=tuple(args.log_with))
    except RunFailed as exc:
        print(f"chimera: run failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    log.info("%s", summary_line(record, plan.run_dir))
    return EXIT_INTERRUPTED if record.status == "interrupted" else 0
