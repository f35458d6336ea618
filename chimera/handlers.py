"""The handlers of the commands whose library code takes no parsed namespace: reproduce, env and tables
(train and matrix are chimera.api's, next to the functions a script calls). chimera/commands.py names each one;
chimera/cli.py imports this module only when one of them runs, and each imports what it needs (torch, the
trainer) inside, so nothing here loads before it is used.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import chimera
from chimera import api
from chimera.errors import EXIT_FAILED

DATA_ENV = api.DATA_ENV  # what --data-dir falls back to (the command table states it too)


def run_reproduce(args: argparse.Namespace) -> int:
    from chimera.reproduce import reproduce_main

    return reproduce_main(args.record, out_dir=args.out, data_dir=args.data_dir, cache_dir=args.cache_dir,
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

