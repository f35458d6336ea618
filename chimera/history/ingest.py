"""One results file -> what the history keeps of it: a run record or a pytest-benchmark JSON, nothing else.

Pure (no database): every file given to `chimera history add` is parsed here first, so a corrupt or
foreign file is refused before the store is touched. Keys: the file's content hash (ingesting it again
is a no-op), commit, machine fingerprint, cell, profile, precision and seed (records).

The machine fingerprint is the hardware the numbers came from, as both kinds of file name it: the
device type and name (the CPU model on CPU, the GPU model on CUDA). Two hosts with the same hardware
count as one machine, which is what a machine-normalised step time is meant to be compared across.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from chimera.errors import ChimeraError
from chimera.fileio import read_json
from chimera.gates.bench_gate import BenchFile, bench_file_of
from chimera.records.bench_report import BenchReport, looks_like_bench_report
from chimera.records.record import RunRecord
from chimera.records.store import RECORD_NAME, validate_record
from chimera.records.upgrade import upgrade

RECORD, BENCH = "record", "bench"
UNKNOWN_COMMIT = "unknown"
# A folder holding one of these is a run folder: only its record.json is results, the rest is run state.
RUN_FOLDER_MARKERS = (RECORD_NAME, "run.lock", "checkpoint")


@dataclass(frozen=True, kw_only=True)
class Source:
    """A file as the store keys it."""

    sha256: str  # of the file's bytes: the same content is the same file, wherever it lies
    kind: str  # RECORD or BENCH
    path: str  # where it was read from (for messages; not part of the key)
    commit: str  # git commit it was made at, or UNKNOWN_COMMIT
    dirty: bool | None  # uncommitted changes in that checkout
    when: str | None  # ISO time: the commit's time (benchmark JSON) or the run's start (records)
    machine: str  # fingerprint: 12 hex digits of sha256("device_type|device_name")
    machine_label: str  # the same for people: "cpu: AMD EPYC"
    body: str  # the file's text, kept so a gate can judge it again later


@dataclass(frozen=True, kw_only=True)
class RunRow:
    """The numbers of one run record the trend shows."""

    run_id: str
    cell: str
    profile: str
    precision: str
    seed: int
    status: str
    clean_train_loss: float | None
    val_loss: float | None
    val_acc: float | None
    test_acc: float | None
    steps: int | None


@dataclass(frozen=True, kw_only=True)
class BenchRow:
    """One benchmark of a pytest-benchmark JSON."""

    name: str
    group: str
    cell: str | None  # extra_info.cell (train-step benchmarks name theirs)
    profile: str | None  # the shapes it ran at (machine_info.chimera.bench_profile)
    precision: str
    median_s: float


@dataclass(frozen=True, kw_only=True)
class Ingested:
    source: Source
    run: RunRow | None = None  # records
    benchmarks: tuple[BenchRow, ...] = ()  # benchmark JSON
    calibration_s: float | None = None  # benchmark JSON: the fp32 calibration GEMM's median


def machine_fingerprint(device_type: str | None, device_name: str | None) -> tuple[str, str]:
    """(fingerprint, label) of the hardware a file's numbers came from."""
    kind, name = device_type or "unknown", device_name or "unknown"
    return hashlib.sha256(f"{kind}|{name}".encode()).hexdigest()[:12], f"{kind}: {name}"


def results_files(paths: Iterable[Path | str]) -> list[Path]:
    """Files as given, and for folders every record.json and every other *.json outside run folders."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        found.extend(_walk(path) if path.is_dir() else [path])
    return found


def _walk(folder: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        if any(marker in files or marker in dirs for marker in RUN_FOLDER_MARKERS):
            dirs.clear()
            if RECORD_NAME in files:
                yield Path(root) / RECORD_NAME
            continue
        yield from (Path(root) / name for name in sorted(files) if name.endswith(".json"))


def ingest_file(path: Path, *, commit: str | None = None) -> Ingested:
    """Parse one file; ChimeraError (one line naming it) when it is neither a valid record nor benchmark JSON.

    `commit` stands in for a file that does not say its commit (records made outside a git checkout).
    """
    data = read_json(path, "results file", fix="it is damaged: restore it or leave it out")
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if looks_like_bench_report(data):
        return _bench(BenchReport.from_json(data, path), digest, raw.decode("utf-8"), commit)
    if isinstance(data, dict) and "run_id" in data and "schema_version" in data:
        data = upgrade(data)  # records of earlier schema versions load as load_record reads them
        validate_record(data, where=str(path))
        return _record(path, RunRecord.from_json(data), digest, raw.decode("utf-8"), commit)
    raise ChimeraError(f"{path}: neither a run record ({RECORD_NAME}) nor a pytest-benchmark JSON "
                       "(--benchmark-json); leave it out")


def _record(path: Path, record: RunRecord, digest: str, body: str, commit: str | None) -> Ingested:
    env = record.env
    machine, label = machine_fingerprint(env.device_type, env.device_name)
    source = Source(sha256=digest, kind=RECORD, path=str(path), commit=env.git_commit or commit or
                    UNKNOWN_COMMIT, dirty=env.git_dirty, when=record.created_at, machine=machine,
                    machine_label=label, body=body)
    m = record.final_metrics
    run = RunRow(run_id=record.run_id, cell=record.cell, profile=record.profile,
                 precision=record.precision.value, seed=record.seed, status=record.status,
                 clean_train_loss=m.clean_train_loss, val_loss=m.val_loss, val_acc=m.val_acc, test_acc=m.test_acc,
                 steps=m.steps)
    return Ingested(source=source, run=run)


def _bench(report: BenchReport, digest: str, body: str, commit: str | None) -> Ingested:
    parsed: BenchFile = bench_file_of(report)  # the speed gate's own reading: refuses what it could not judge
    machine, label = machine_fingerprint(report.machine.device, report.machine.device_name)
    source = Source(sha256=digest, kind=BENCH, path=str(report.path), commit=report.commit.id or commit or
                    UNKNOWN_COMMIT, dirty=report.commit.dirty, when=report.commit.time or report.datetime,
                    machine=machine, machine_label=label, body=body)
    entries = {entry.name: entry for entry in report.benchmarks}
    rows = tuple(BenchRow(name=name, group=parsed.groups[name], cell=entries[name].cell,
                          profile=entries[name].profile or parsed.profile,
                          precision=parsed.precisions[name], median_s=median)
                 for name, median in sorted(parsed.medians.items()))
    return Ingested(source=source, benchmarks=rows, calibration_s=parsed.calibration_s)


def bench_file(path: str, calibration_s: float, rows: Iterable[BenchRow]) -> BenchFile:
    """The speed gate's view of a stored benchmark file, rebuilt from its rows."""
    rows = list(rows)
    return BenchFile(path=Path(path), medians={r.name: r.median_s for r in rows},
                     groups={r.name: r.group for r in rows}, precisions={r.name: r.precision for r in rows},
                     calibration_s=calibration_s, profile=None, device=None)
