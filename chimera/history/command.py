"""`chimera history add FILE_OR_FOLDER...`, `chimera history [show]`, `history export` and `history site`.

    chimera history add runs/ci bench/results/ci.json [--commit SHA] [--store results/history.sqlite]
    chimera history [show] [--cells fixed/*] [--bands FILE] [--threshold 0.15]
    chimera history export --format csv|json [--out FILE]
    chimera history site OUT/

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


def run_history_export(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """`chimera history export`: every row of the store as CSV or JSON, to --out or stdout."""
    from chimera.fileio import atomic_write_text
    from chimera.history import store as history_store
    from chimera.history.export import FORMATS, export_text

    if args.format not in FORMATS:  # before the store is read: a typo costs nothing
        raise ChimeraError(f"--format {args.format}: expected {' or '.join(FORMATS)}")
    text = export_text(*history_store.rows(args.store or default_store()), args.format)
    if args.out is None:
        (out or sys.stdout).write(text)
    else:
        atomic_write_text(args.out, text)
    return 0


def run_history_site(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """`chimera history site OUT/`: index.html and one page per cell, offline."""
    from chimera.history import store as history_store
    from chimera.history.site import write_site

    store = args.store or default_store()
    pages = write_site(history_store.load(store), args.out_dir)
    (out or sys.stdout).write(f"{pages[0]}: {len(pages) - 1} cell page(s) from {store}\n")
    return 0


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
