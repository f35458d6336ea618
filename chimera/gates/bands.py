"""The loss gate: reference convergence bands per cell, built from several seeds, checked against new runs.

    chimera bands build runs/bands-ci --out chimera/gates/bands/ci.json     # from >= 5 seeds per cell
    chimera bands check runs/ci [--bands chimera/gates/bands/ci.json]       # exit 1 when a run is outside

As MLPerf checks convergence against reference runs: for each cell, over its seeds, of three
final_metrics (val_loss: the final clean validation loss, after restoring the best checkpoint when
early stopping is on; val_acc; best_step: the step of the lowest validation loss)

    band = mean ± max(SIGMAS · std, floor)      std: sample standard deviation (n - 1)

with floors FLOORS["val_loss"] = 0.05 nats, FLOORS["val_acc"] = 0.03, and for best_step
BEST_STEP_FLOOR_EVALUATIONS = 2 evaluations (2 · train.eval_every steps). The floors keep a band
from collapsing when the seeds happen to agree (CPU runs are deterministic per seed, so five seeds
can land close together) while still catching a real shift. Each cell's band also stores a hash
of the resolved config without seed, device and evaluation settings: a run of a changed config is reported, not judged.

Bands are per profile *and precision*: bf16 rounds differently from fp32, so a bf16 run is never judged
against fp32 bands. A bands file names its precision (absent: fp32, as in files written before precision
was an axis) and lives at bands/<profile>.json for fp32, bands/<profile>-<precision>.json otherwise; the
config hash leaves train.precision out, so the fp32 hashes written before it existed stay valid. It
also leaves out data.train_pool when that names the pool every config before the key implied (at any
pinned sha256: a manifest is never edited, a different pool gets a new name), for the same reason.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from chimera.errors import ChimeraError
from chimera.fileio import atomic_write_text, read_json
from chimera.records.record import RunRecord
from chimera.records.store import find_records, load_record

BANDS_SCHEMA_VERSION = 1
BANDS_DIR = Path(__file__).with_name("bands")  # packaged bands, one file per profile: bands/<profile>.json
METRICS = ("val_loss", "val_acc", "best_step")  # keys of a record's final_metrics
SIGMAS = 3.0
FLOORS = {"val_loss": 0.05, "val_acc": 0.03}
BEST_STEP_FLOOR_EVALUATIONS = 2
FINISHED = ("completed", "stopped_early")
MIN_SEEDS = 5  # the CLI's default; compute_bands itself needs 2 for a standard deviation
IMPLIED_TRAIN_POOL = "manifest:ag_news-train-subset"  # chimera.config.DEFAULT_TRAIN_POOL (a test holds them equal)
# chimera.config.DATASET_DEFAULTS (a test holds them equal): AG News by its default columns and splits
IMPLIED_DATASET = {"dataset": "ag_news", "text_column": "text", "label_column": "label", "train_split": "train",
                   "test_split": "test"}
_NO_DEFAULT = object()


@dataclass(frozen=True)
class Violation:
    """A run outside its band (or not checkable against one: wrong profile, unknown cell, changed config)."""

    run_id: str
    cell: str
    seed: int
    metric: str  # a METRICS key, or "status", "profile", "cell", "config"
    value: Any
    low: float | None
    high: float | None
    message: str


def config_fingerprint(resolved: dict) -> str:
    """sha256 of a resolved config in its JSON form (`RunRecord.config_json()`) without seed, device and the
    evaluation section (what is measured and timed, never what is trained): what must match between seeds
    and checks."""
    config = {k: v for k, v in resolved.items() if k not in ("seed", "device", "evaluation")}
    config["train"] = {k: v for k, v in config["train"].items() if k != "precision"}  # bands are per precision
    # a record holds the mode that ran; eager (or auto, before it resolves) hashes as every run did before the field
    if config["train"].get("step_mode", "eager") in ("eager", "auto"):
        config["train"].pop("step_mode", None)
    pool = str(config["data"].get("train_pool", IMPLIED_TRAIN_POOL)).partition("@")[0]
    config["data"] = {k: v for k, v in config["data"].items() if k != "train_pool" or pool != IMPLIED_TRAIN_POOL}
    # AG News read by its default columns and splits hashes as every run did before the dataset keys existed
    config["data"] = {k: v for k, v in config["data"].items() if IMPLIED_DATASET.get(k, _NO_DEFAULT) != v}
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def bands_path(profile: str, precision: str) -> Path:
    """The packaged bands file for runs of `profile` in `precision`."""
    return BANDS_DIR / (f"{profile}.json" if precision == "fp32" else f"{profile}-{precision}.json")


def bands_precision(bands: dict) -> str:
    return bands.get("precision", "fp32")


def floor_for(metric: str, eval_every: int) -> float:
    return BEST_STEP_FLOOR_EVALUATIONS * eval_every if metric == "best_step" else FLOORS[metric]


def metric_band(values: list[float], floor: float) -> dict[str, float]:
    """mean ± max(SIGMAS · sample std, floor), with the parts it was made from."""
    mean, std = statistics.fmean(values), statistics.stdev(values)
    half = max(SIGMAS * std, floor)
    return {"mean": mean, "std": std, "n": len(values), "floor": floor, "half_width": half,
            "low": mean - half, "high": mean + half}


def compute_bands(records: list[RunRecord], *, min_seeds: int = 2) -> dict:
    """Per-cell bands over seeds from finished runs of one profile (see the module docstring)."""
    if not records:
        raise ChimeraError("no records to build bands from")
    profiles = sorted({r.profile for r in records})
    if len(profiles) != 1:
        raise ChimeraError(f"records of several profiles ({', '.join(profiles)}): build one bands file per profile")
    precisions = sorted({r.precision.value for r in records})
    if len(precisions) != 1:
        raise ChimeraError(f"records of several precisions ({', '.join(precisions)}): build one bands file per "
                           "precision (a bf16 run is never judged against fp32 bands)")
    by_cell: dict[str, list[dict]] = {}
    for record in records:
        if record.status not in FINISHED:
            raise ChimeraError(f"{record.run_id}: status {record.status}; bands need finished runs "
                               "(rerun or remove it)")
        by_cell.setdefault(record.cell, []).append(record)
    cells = {cell: _cell_bands(cell, runs, min_seeds=max(min_seeds, 2)) for cell, runs in sorted(by_cell.items())}
    return {"schema_version": BANDS_SCHEMA_VERSION, "profile": profiles[0], "precision": precisions[0],
            "statistic": f"mean ± max({SIGMAS:g}·std, floor); std = sample standard deviation over seeds",
            "sigmas": SIGMAS, "floors": {**FLOORS, "best_step_evaluations": BEST_STEP_FLOOR_EVALUATIONS},
            "cells": cells}


def _cell_bands(cell: str, runs: list[RunRecord], *, min_seeds: int) -> dict:
    seeds = [r.seed for r in runs]
    if len(set(seeds)) != len(seeds):
        raise ChimeraError(f"{cell}: seed(s) {sorted({s for s in seeds if seeds.count(s) > 1})} appear twice; "
                           "a band is a spread over distinct seeds")
    if len(runs) < min_seeds:
        raise ChimeraError(f"{cell}: {len(runs)} seed(s), need at least {min_seeds} for a band "
                           "(chimera matrix --seed N for more)")
    fingerprints = {config_fingerprint(r.config_json()) for r in runs}
    if len(fingerprints) != 1:
        raise ChimeraError(f"{cell}: the runs have different configs (besides seed, device and evaluation settings); "
                           "build bands from runs of one config")
    eval_every = runs[0].config.train.eval_every
    metrics = {}
    for metric in METRICS:
        values = [getattr(r.final_metrics, metric) for r in runs]
        if all(v is None for v in values):
            continue
        if any(v is None for v in values):
            raise ChimeraError(f"{cell}: final_metrics.{metric} is missing in some runs")
        metrics[metric] = metric_band([float(v) for v in values], floor_for(metric, eval_every))
    return {"n": len(runs), "seeds": sorted(seeds), "config_sha256": fingerprints.pop(), "eval_every": eval_every,
            "metrics": metrics}


def check_bands(records: list[RunRecord], bands: dict) -> list[Violation]:
    """Every way each record falls outside (or cannot be judged against) its cell's band."""
    violations: list[Violation] = []
    for record in records:
        def flag(metric, value, message, low=None, high=None, r=record):
            violations.append(Violation(r.run_id, r.cell, r.seed, metric, value, low, high, message))

        cell = bands["cells"].get(record.cell)
        if record.profile != bands["profile"]:
            flag("profile", record.profile, f"bands are for profile {bands['profile']!r}")
            continue
        precision = record.precision.value
        if precision != bands_precision(bands):
            flag("precision", precision, f"bands are for {bands_precision(bands)} runs; a "
                 f"{precision} run is judged only against {precision} bands")
            continue
        if cell is None:
            flag("cell", record.cell, f"no band for this cell (bands cover {', '.join(bands['cells'])})")
            continue
        if record.status not in FINISHED:
            flag("status", record.status, "run did not finish")
            continue
        fingerprint = config_fingerprint(record.config_json())
        if fingerprint != cell["config_sha256"]:
            flag("config", fingerprint[:12], "config differs from the one the bands were built "
                 "from: rebuild the bands (chimera bands build) if the change is intended")
            continue
        for metric, band in cell["metrics"].items():
            value = getattr(record.final_metrics, metric)
            if value is None:
                flag(metric, None, "missing from final_metrics", band["low"], band["high"])
            elif not band["low"] <= value <= band["high"]:
                flag(metric, value, f"outside [{band['low']:.4g}, {band['high']:.4g}] "
                     f"(mean {band['mean']:.4g} over {band['n']} seeds)", band["low"], band["high"])
    return violations


def load_bands(path: Path | str, *, precision: str = "fp32") -> dict:
    path = Path(path)
    what = "no bands file" if precision == "fp32" else (f"no bands for {precision} runs (they are never judged "
                                                         "against fp32 bands)")
    build = f"`chimera bands build RUN_DIR --out {path}` from >= 5 seeds per cell"
    bands = read_json(path, "bands file", missing=f"{what}; build one with {build}",
                      fix=f"restore it from git or rebuild it with {build}")
    if not isinstance(bands, dict) or bands.get("schema_version") != BANDS_SCHEMA_VERSION or "cells" not in bands:
        raise ChimeraError(f"{path}: not a bands file of schema version {BANDS_SCHEMA_VERSION}; rebuild it")
    return bands


def _load_records(paths: list[Path]) -> list[RunRecord]:
    return [load_record(path) for path in find_records(list(paths))]


def run_bands(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """`chimera bands build`: write the bands JSON and print each cell's bands."""
    bands = compute_bands(_load_records(args.paths), min_seeds=args.min_seeds)
    atomic_write_text(args.out, json.dumps(bands, indent=1) + "\n")
    out = out or sys.stdout
    for cell, band in bands["cells"].items():
        parts = ", ".join(f"{m} {b['mean']:.4g} ± {b['half_width']:.3g}" for m, b in band["metrics"].items())
        out.write(f"{cell} ({band['n']} seeds): {parts}\n")
    out.write(f"wrote {args.out}\n")
    return 0


def run_check_bands(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """`chimera bands check`: one line per record and each violation; 1 when any record is outside its band."""
    records = _load_records(args.paths)
    precision = records[0].precision.value
    path = args.bands or bands_path(records[0].profile, precision)
    bands = load_bands(path, precision=precision)
    out = out or sys.stdout
    failed = 0
    for record in records:
        violations = check_bands([record], bands)
        failed += bool(violations)
        out.write(f"{'FAIL' if violations else 'ok  '}  {record.run_id}\n")
        out.writelines(f"      {v.metric} = {v.value}: {v.message}\n" for v in violations)
    out.write(f"{len(records)} run(s) against {path}: {failed} outside their band\n")
    return 1 if failed else 0
