"""The history store: one SQLite file (Python's own sqlite3), written in one transaction per `add`.

Why SQLite: it ships with Python (no dependency), one file that CI can keep as an artifact and any
SQL tool can open, transactions (a refused file leaves the store exactly as it was), and one query
across both kinds of results. pytest-benchmark's own storage (`--benchmark-autosave`, one JSON per
session under .benchmarks/<machine>/) keeps only benchmark JSON, so run records would need a second
store with its own keys; here both share commit and machine fingerprint. Each file's text is kept
beside the extracted numbers, so a gate can judge it again as the gate changes.

Store version 2 names the final clean train loss `runs.clean_train_loss`; version 1 called the column
`train_loss`. A version-1 store is read as it is (the old column under the new name) and renamed in
place by the next `add`, inside that add's transaction, so a refused add leaves it at version 1.

    sqlite3 results/history.sqlite 'SELECT commit_sha, cell, seed, val_acc FROM files JOIN runs ON file = sha256'
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from chimera.errors import ChimeraError
from chimera.history.ingest import BENCH, RECORD, BenchRow, Ingested, RunRow, Source

SCHEMA_VERSION = 2
MIGRATIONS = {1: "ALTER TABLE runs RENAME COLUMN train_loss TO clean_train_loss"}  # version -> SQL to the next
APPLICATION = "chimera-bench history"
SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE files (
    sha256 TEXT PRIMARY KEY,                 -- of the file's bytes: adding it again is a no-op
    kind TEXT NOT NULL CHECK (kind IN ('record', 'bench')),
    path TEXT NOT NULL, added_at TEXT NOT NULL,
    commit_sha TEXT NOT NULL, dirty INTEGER, recorded_at TEXT,
    machine TEXT NOT NULL, machine_label TEXT NOT NULL,
    calibration_s REAL,                      -- benchmark JSON: the fp32 calibration GEMM's median
    body TEXT NOT NULL);
CREATE TABLE runs (
    file TEXT PRIMARY KEY REFERENCES files (sha256),
    run_id TEXT NOT NULL, cell TEXT NOT NULL, profile TEXT NOT NULL, precision TEXT NOT NULL,
    seed INTEGER NOT NULL, status TEXT NOT NULL,
    clean_train_loss REAL, val_loss REAL, val_acc REAL, test_acc REAL, steps INTEGER);
CREATE TABLE benchmarks (
    file TEXT NOT NULL REFERENCES files (sha256), name TEXT NOT NULL, grp TEXT NOT NULL, cell TEXT,
    profile TEXT, precision TEXT NOT NULL, median_s REAL NOT NULL,
    PRIMARY KEY (file, name));
CREATE INDEX runs_by_cell ON runs (cell, profile, precision);
CREATE INDEX benchmarks_by_cell ON benchmarks (cell, profile, precision);
"""
_RUN_FIELDS = ("run_id", "cell", "profile", "precision", "seed", "status", "clean_train_loss", "val_loss",
               "val_acc", "test_acc", "steps")
_RENAMED_IN = {1: {"clean_train_loss": "train_loss"}}  # store version -> RunRow field -> its column there
_BENCH_FIELDS = ("name", "grp", "cell", "profile", "precision", "median_s")


@dataclass(frozen=True)
class Added:
    """What one `add` did."""

    added: tuple[Ingested, ...]
    already: tuple[Ingested, ...]  # the same content was in the store (or given twice)


@dataclass(frozen=True)
class History:
    """Everything in a store, as the trend reads it."""

    sources: dict[str, Source]  # sha256 -> source
    runs: dict[str, RunRow]  # sha256 of a record -> its row
    benchmarks: dict[str, tuple[BenchRow, ...]]  # sha256 of a benchmark file -> its rows
    calibration_s: dict[str, float]  # sha256 of a benchmark file -> its calibration GEMM median


def add(store: Path, items: Sequence[Ingested]) -> Added:
    """Insert every item not yet in the store, all in one transaction: all of them or, on any error, none."""
    with _connect(store, create=True) as db:
        added, already = [], []
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        db.execute("BEGIN IMMEDIATE")  # the write lock first: a concurrent add cannot slip in between
        try:
            _migrate(db)
            known = {row[0] for row in db.execute("SELECT sha256 FROM files")}
            for item in items:
                if item.source.sha256 in known:
                    already.append(item)
                    continue
                known.add(item.source.sha256)
                _insert(db, item, now)
                added.append(item)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    return Added(tuple(added), tuple(already))


def _insert(db: sqlite3.Connection, item: Ingested, now: str) -> None:
    s = item.source
    db.execute("INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
               (s.sha256, s.kind, s.path, now, s.commit, s.dirty, s.when, s.machine, s.machine_label,
                item.calibration_s, s.body))
    if item.run is not None:
        db.execute(f"INSERT INTO runs VALUES (?, {', '.join('?' * len(_RUN_FIELDS))})",
                   (s.sha256, *(getattr(item.run, f) for f in _RUN_FIELDS)))
    for bench in item.benchmarks:
        db.execute("INSERT INTO benchmarks VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (s.sha256, bench.name, bench.group, bench.cell, bench.profile, bench.precision, bench.median_s))


def load(store: Path) -> History:
    """Read the whole store (histories are small: numbers and a few hundred files)."""
    with _connect(store, create=False) as db:
        sources = {row[0]: Source(sha256=row[0], kind=row[1], path=row[2], commit=row[3],
                                  dirty=None if row[4] is None else bool(row[4]), when=row[5], machine=row[6],
                                  machine_label=row[7], body=row[8])
                   for row in db.execute("SELECT sha256, kind, path, commit_sha, dirty, recorded_at, machine, "
                                         "machine_label, body FROM files")}
        calibration = {row[0]: row[1] for row in
                       db.execute("SELECT sha256, calibration_s FROM files WHERE kind = ?", (BENCH,))}
        renamed = _RENAMED_IN.get(_version(db), {})
        columns = ", ".join(renamed.get(f, f) for f in _RUN_FIELDS)
        runs = {row[0]: RunRow(**dict(zip(_RUN_FIELDS, row[1:], strict=True)))
                for row in db.execute(f"SELECT file, {columns} FROM runs")}
        benchmarks: dict[str, list[BenchRow]] = {}
        for row in db.execute(f"SELECT file, {', '.join(_BENCH_FIELDS)} FROM benchmarks ORDER BY file, name"):
            values = dict(zip(_BENCH_FIELDS, row[1:], strict=True))
            values["group"] = values.pop("grp")
            benchmarks.setdefault(row[0], []).append(BenchRow(**values))
    assert all(sources[sha].kind == RECORD for sha in runs)
    return History(sources=sources, runs=runs, benchmarks={k: tuple(v) for k, v in benchmarks.items()},
                   calibration_s=calibration)


def rows(store: Path) -> tuple[list[str], list[dict]]:
    """Every column the store holds, one row per run record or benchmark (a file's columns repeated on each of
    its benchmarks; a benchmark file without any keeps one row), in a fixed order: `chimera history export`."""
    with _connect(store, create=False) as db:
        renamed = {column: name for name, column in _RENAMED_IN.get(_version(db), {}).items()}
        filled_by: dict[str, list[str]] = {}  # exported column -> the table columns that fill it
        for table in ("files", "runs", "benchmarks"):
            for column in (row[1] for row in db.execute(f"PRAGMA table_info({table})")):
                if column != "file":  # runs.file and benchmarks.file repeat files.sha256
                    filled_by.setdefault(renamed.get(column, column), []).append(f"{table}.{column}")
        # cell, profile and precision are in runs and benchmarks: a row has one of them (the file's kind).
        select = ", ".join(f"COALESCE({', '.join(sources)}, NULL) AS {name}" for name, sources in filled_by.items())
        cursor = db.execute(f"SELECT * FROM (SELECT {select} FROM files LEFT JOIN runs ON runs.file = files.sha256 "
                            "LEFT JOIN benchmarks ON benchmarks.file = files.sha256) "
                            "ORDER BY kind, commit_sha, cell, profile, precision, seed, name, machine, sha256")
        columns = [d[0] for d in cursor.description]
        return columns, [dict(zip(columns, row, strict=True)) for row in cursor]


@contextmanager
def _connect(store: Path, *, create: bool) -> Iterator[sqlite3.Connection]:
    """An open store; ChimeraError for a missing one (when reading), a non-SQLite file or another schema."""
    if not create and not store.exists():
        raise ChimeraError(f"--store {store}: no history store yet; add results with chimera history add FILE "
                           f"--store {store}")
    fresh = not store.exists()
    try:
        if fresh:
            store.parent.mkdir(parents=True, exist_ok=True)
        uri = f"{store.resolve().as_uri()}?mode={'rwc' if create else 'ro'}"
        with closing(sqlite3.connect(uri, uri=True, isolation_level=None)) as db:
            if fresh:
                _create(db)
            _check(db, store)
            yield db
    except sqlite3.DatabaseError as exc:
        if fresh:
            store.unlink(missing_ok=True)
        raise ChimeraError(f"--store {store}: not a usable history store ({exc}); choose another --store") from None


def _create(db: sqlite3.Connection) -> None:
    """Tables and the marker rows in one transaction: a store is either complete or refused as foreign."""
    db.executescript(f"BEGIN; {SCHEMA} INSERT INTO meta VALUES ('application', '{APPLICATION}'); "
                     f"INSERT INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}'); COMMIT;")


def _check(db: sqlite3.Connection, store: Path) -> None:
    try:
        meta = dict(db.execute("SELECT key, value FROM meta"))
    except sqlite3.OperationalError:
        meta = {}
    if meta.get("application") != APPLICATION:
        raise ChimeraError(f"--store {store}: an SQLite file, but not a chimera history store; choose another --store")
    readable = [str(v) for v in (*MIGRATIONS, SCHEMA_VERSION)]
    if meta.get("schema_version") not in readable:
        raise ChimeraError(f"--store {store}: history schema {meta.get('schema_version')}, this chimera reads "
                           f"{' or '.join(readable)}; use a new --store")


def _version(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])


def _migrate(db: sqlite3.Connection) -> None:
    """Bring a store of an earlier version to SCHEMA_VERSION, inside the caller's transaction."""
    while (version := _version(db)) in MIGRATIONS:
        db.execute(MIGRATIONS[version])
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version + 1),))
