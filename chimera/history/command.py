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

HISTORY_ENV = "CHIMERA_HISTORY"
DEFAULT_STORE = Path("results/history.sqlite")


def default_store() -> Path:
    return Path(os.environ.get(HISTORY_ENV) or DEFAULT_STORE)


def run_history_add(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """`chimera history add` (its arguments: chimera/commands.py)."""
    return _add(args.paths, args.store or default_store(), commit=args.commit, out=out or sys.stdout)


def run_history_show(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """`chimera history [show]`."""
    return _show(args.store or default_store(), cells=args.cells, bands=args.bands, threshold=args.threshold,
                 out=out or sys.stdout)


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
