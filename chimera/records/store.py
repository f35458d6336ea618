"""Run records on disk: reading (upgrade, validate, type), writing (validate, atomic), finding them.

Records are the API between training and everything downstream (doctor, report, gates, reproduce):
those tools read records, never live objects. Their shape is `chimera.records.record.RunRecord`;
the JSON is checked against `record.schema.json` both ways. Writes are atomic (`chimera.fileio`), so
a crash leaves the previous valid file or none, never a truncated one.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from chimera.errors import ChimeraError
from chimera.fileio import atomic_write_text, read_json
from chimera.records.record import RunRecord

RECORD_NAME = "record.json"
SCHEMA_PATH = Path(__file__).with_name("record.schema.json")


def write_record(record: RunRecord, run_dir: Path, *, overwrite: bool = False) -> Path:
    """Validate and atomically write `run_dir/record.json`.

    `overwrite=False` refuses to replace an existing record (a finished run is evidence); the
    trainer passes `overwrite=True` only when it updates the record of the run it owns (resume).
    """
    path = Path(run_dir) / RECORD_NAME
    if path.exists() and not overwrite:
        raise ChimeraError(f"{path}: a record already exists; choose another --out or pass --resume")
    data = record.to_json()  # non-finite floats become null: JSON has none (the doctor reads `events`)
    validate_record(data, where=str(path))
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=False) + "\n")
    return path


@lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def validate_record(record: dict[str, Any], *, where: str = "record") -> None:
    """Raise ChimeraError naming the first schema violation (JSON pointer into the record)."""
    import jsonschema  # deferred: only needed when a record is written or read

    validator = jsonschema.Draft202012Validator(load_schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(record))
    if error is not None:
        pointer = "/" + "/".join(str(p) for p in error.absolute_path)
        raise ChimeraError(f"{where}: does not match the run-record schema at {pointer}: {error.message}")


def load_record(path: Path | str) -> RunRecord:
    """Read, upgrade (older schema versions), validate and type one record (a record.json or its run folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / RECORD_NAME
    record = read_json(path, "record", fix="it is damaged: restore it from a copy or train the run again")
    if not isinstance(record, dict):
        raise ChimeraError(f"{path}: not a run record (top level is not an object)")
    from chimera.records.upgrade import upgrade  # only records older than SCHEMA_VERSION need it

    record = upgrade(record)
    validate_record(record, where=str(path))
    return RunRecord.from_json(record)


def find_records(paths: list[Path | str]) -> list[Path]:
    """Expand record files and run folders (searched recursively) into sorted record paths."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found.extend(sorted(path.rglob(RECORD_NAME)))
        else:
            raise ChimeraError(f"{path}: no such file or folder")
    if not found:
        raise ChimeraError(f"no {RECORD_NAME} under {', '.join(str(p) for p in paths)}")
    return found
