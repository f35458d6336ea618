"""`chimera history add FILE_OR_FOLDER...` and `chimera history [show]`.

    chimera history add runs/ci bench/results/ci.json [--commit SHA] [--store results/history.sqlite]
    chimera history [show] [--cells fixed/*] [--bands FILE] [--threshold 0.15]

Store: --store, else $CHIMERA_HISTORY, else results/history.sqlite. `add` parses every file before it
opens the store, then inserts them in one transaction: a corrupt or foreign file is one line (exit 2)
and the store is left exactly as it was; a file whose content is already in the store is skipped.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import sys
from pathlib import Path
from typing import TextIO

from chimera.errors import ChimeraError
from chimera.gates.bench_gate import DEFAULT_THRESHOLD

HISTORY_ENV = "CHIMERA_HISTORY"
DEFAULT_STORE = Path("results/history.sqlite")


def default_store() -> Path:
    return Path(os.environ.get(HISTORY_ENV) or DEFAULT_STORE)


def _store_option(parser: argparse.ArgumentParser, *, top: bool) -> None:
    # On the sub-commands the default is SUPPRESS, so `chimera history --store X show` keeps X.
    parser.add_argument("--store", type=Path, default=None if top else argparse.SUPPRESS,
                        help=f"history SQLite file; default ${HISTORY_ENV}, else {DEFAULT_STORE}")


def _show_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    default = (lambda value: value) if top else (lambda value: argparse.SUPPRESS)
    parser.add_argument("--cells", nargs="+", default=default(None), metavar="PATTERN",
                        help="only these cells (shell patterns, e.g. 'fixed/*'); default: all")
    parser.add_argument("--bands", type=Path, default=default(None),
                        help="bands JSON for the loss gate; default: the packaged bands of each run's profile and "
                             "precision (runs without any are shown as `no bands`)")
    parser.add_argument("--threshold", type=float, default=default(DEFAULT_THRESHOLD),
                        help="speed gate: a normalised step time more than this fraction above the previous "
                             f"commit's on the same machine is a regression; default {DEFAULT_THRESHOLD}")


def add_history_arguments(parser: argparse.ArgumentParser) -> None:
    """`chimera history [show|add]` under the `history` sub-command parser."""
    _store_option(parser, top=True)
    _show_options(parser, top=True)
    sub = parser.add_subparsers(dest="history_command", metavar="HISTORY_COMMAND")
    add = sub.add_parser("add", help="ingest run records and pytest-benchmark JSON into the store",
                         description="Add files (a folder: every record.json and every benchmark JSON outside run "
                                     "folders, recursively). Re-adding a file already in the store changes nothing.")
    add.add_argument("paths", nargs="+", type=Path, metavar="FILE_OR_FOLDER", help="record.json, benchmark JSON, "
                     "or folders holding them")
    add.add_argument("--commit", default=None, help="commit for files that do not say theirs (records made "
                     "outside a git checkout); a file that names its commit keeps it")
    _store_option(add, top=False)
    show = sub.add_parser("show", help="per cell: normalised step time and final metrics by commit and machine "
                                       "(the default)")
    _store_option(show, top=False)
    _show_options(show, top=False)


def run_history(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    store = args.store or default_store()
    if args.history_command == "add":
        return _add(args.paths, store, commit=args.commit, out=out)
    return _show(store, cells=args.cells, bands=args.bands, threshold=args.threshold, out=out)


def _add(paths: list[Path], store: Path, *, commit: str | None, out: TextIO) -> int:
    from chimera.history import ingest
    from chimera.history import store as history_store

    files = ingest.results_files(paths)
    if not files:
        raise ChimeraError(f"{', '.join(map(str, paths))}: no record.json or benchmark JSON found")
    items = [ingest.ingest_file(path, commit=commit) for path in files]  # all parsed before the store is opened
    done = history_store.add(store, items)
    kinds = [item.source.kind for item in done.added]
    out.write(f"{store}: added {len(done.added)} file(s) ({kinds.count(ingest.RECORD)} run record(s), "
              f"{kinds.count(ingest.BENCH)} benchmark file(s)); {len(done.already)} already in the store\n")
    return 0


def _show(store: Path, *, cells: list[str] | None, bands: Path | None, threshold: float, out: TextIO) -> int:
    from chimera.history import store as history_store
    from chimera.history.trend import bands_from_file, build_trends, format_trends

    if not 0 < threshold < 10:
        raise ChimeraError(f"--threshold {threshold}: expected a fraction such as 0.15 (15%)")
    trends = build_trends(history_store.load(store), threshold=threshold, bands_for=bands_from_file(bands))
    if cells:
        trends = [t for t in trends if any(fnmatch.fnmatchcase(t.cell, pattern) for pattern in cells)]
        if not trends:
            raise ChimeraError(f"--cells {' '.join(cells)}: no cell in {store} matches")
    out.write(format_trends(trends, threshold=threshold))
    return 0
