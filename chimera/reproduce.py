"""Rerun a recorded run from its record alone and diff the two records.

    chimera reproduce runs/ci/fixed-dense-ci-s0/record.json --out runs/reproduced

The record's resolved config and seed rebuild the run; the data and tokenizer fingerprints are
checked before the first step (different data is refused, exit 2). The diff compares curves and
final metrics exactly (JSON numbers, bitwise on the same hardware and software) and lists the
environment differences that could explain a mismatch. Wall-clock figures (`timing`, `wall_s`,
`train_samples_per_s`, `compile_s`), `energy`, `run_id`, `created_at`, `events` and `resume` are not results and
are ignored.
Exit codes: 0 identical, 1 metrics differ, 2 bad input (unreadable record, different data).

This module joins the two sides, as the CLI does: it trains (chimera.train, imported only when a rerun
starts) and then diffs (chimera.analysis.record_diff, pure functions of two records). It sits beside
cli.py rather than in analysis/, which never imports the trainer.
"""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from chimera.analysis.record_diff import diff_records, format_diff
from chimera.errors import ChimeraError
from chimera.records.record import RunRecord
from chimera.records.store import RECORD_NAME, load_record


def reproduce_main(record_path: Path, *, out_dir: Path, data_dir: Path | None, cache_dir: Path | None = None,
                   quiet: bool = False, out: TextIO) -> int:
    """Rerun the record at `record_path` into `out_dir`, write the diff to `out`; 0 identical, 1 not."""
    from chimera.api import data_folder

    old = load_record(record_path)
    data_dir = data_folder(data_dir, flag="--data-dir", dataset=old.config.data.dataset)  # the record's dataset
    new, new_path = rerun(old, where=str(record_path), out_dir=out_dir, data_dir=data_dir, cache_dir=cache_dir,
                          quiet=quiet)
    diff = diff_records(old, new)
    out.write(format_diff(diff, old_name=str(record_path), new_name=str(new_path)) + "\n")
    return 0 if diff.identical else 1


def rerun(old: RunRecord, *, where: str, out_dir: Path, data_dir: Path | None, cache_dir: Path | None,
          quiet: bool) -> tuple[RunRecord, Path]:
    """Train the record's config again under `out_dir` (never anywhere the record names)."""
    from chimera.train.plan import make_plan  # deferred: the diff needs no torch
    from chimera.train.recipe import RunFailed
    from chimera.train.run import run_plan

    if old.status == "interrupted":
        raise ChimeraError(f"{where}: the run was interrupted, so its record is not a result; resume it "
                           f"with `chimera train ... --resume RUN_DIR` first")
    config = old.config  # validated when the record loaded
    for key in ("cell", "profile", "seed"):
        if getattr(config, key) != getattr(old, key):
            raise ChimeraError(f"{where}: {key} is {getattr(old, key)!r} but config.{key} is {getattr(config, key)!r}")
    plan = make_plan(config, out_dir=out_dir)  # refuses names that would leave out_dir
    try:
        run_plan(plan, data_dir=data_dir, cache_dir=cache_dir, quiet=quiet, expected_data=old.data)
    except RunFailed:  # a failed original should fail the same way: compare the failed records
        pass
    return load_record(plan.run_dir / RECORD_NAME), plan.run_dir / RECORD_NAME
