"""The handlers of the commands whose library code takes no parsed namespace: train, matrix, reproduce, env
and tables. chimera/commands.py names each one; chimera/cli.py imports this module only when one of them runs,
and each imports what it needs (torch, the trainer) inside, so nothing here loads before it is used. train and
matrix turn their flags into calls of chimera.api, the functions a script calls: one code path for both.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import chimera
from chimera import api
from chimera.errors import EXIT_FAILED, EXIT_INTERRUPTED, ChimeraError

DATA_ENV = api.DATA_ENV  # what --data-dir falls back to (the command table states it too)


def run_train(args: argparse.Namespace) -> int:
    """`chimera train`: one cell, or the run folder --resume names (through chimera.api, as a script would)."""
    from chimera.train.recipe import RunFailed

    data_dir, overrides = _data_dir(args), _with_precision(args.overrides, args.precision)
    config = api.resolve_config(args.cell, args.profile, seed=args.seed, device=args.device, overrides=overrides,
                            matrix=args.matrix)
    try:
        record = api.train_config(config, out_dir=args.out, data_dir=data_dir, cache_dir=args.cache_dir,
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

    records = api.train_matrix(
        args.profile, cells=args.cells, seeds=args.seeds if args.seeds is not None else [args.seed],
        ablation=args.ablation, out_dir=args.out, data_dir=_data_dir(args),
        overrides=_with_precision(args.overrides, args.precision), device=args.device, matrix=args.matrix,
        cache_dir=args.cache_dir, quiet=args.quiet, log_with=args.log_with, on_failure=say)
    if records and records[-1].status == "interrupted":
        return EXIT_INTERRUPTED
    return EXIT_FAILED if failures else 0


def run_reproduce(args: argparse.Namespace) -> int:
    from chimera.reproduce import reproduce_main

    return reproduce_main(args.record, out_dir=args.out, data_dir=_data_dir(args), cache_dir=args.cache_dir,
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


def _repository() -> Path:
    return Path(chimera.__file__).resolve().parents[1]


def _data_dir(args: argparse.Namespace) -> Path | None:
    """--data-dir, else $CHIMERA_DATA_DIR, else None (the Hugging Face hub)."""
    return api.data_folder(args.data_dir, flag="--data-dir")


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
