"""Run records: the JSON each run leaves behind, its schema, and safe reading and writing.

Records are the API between training and everything downstream (doctor, report, gates, reproduce):
those tools read records, never live objects. Writes are atomic (`chimera.fileio`), so a crash
leaves the previous valid file or none, never a truncated one.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

from chimera.config import precision_from_accelerate
from chimera.errors import ChimeraError
from chimera.fileio import atomic_write_text, read_json

SCHEMA_VERSION = 1
RECORD_NAME = "record.json"
SCHEMA_PATH = Path(__file__).with_name("record.schema.json")
STATUSES = ("completed", "stopped_early", "failed", "interrupted")



def _finite_or_none(value: Any) -> Any:
    """JSON has no NaN/inf; a non-finite float becomes null (the doctor reports it from `events`)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value


def write_record(record: dict[str, Any], run_dir: Path, *, overwrite: bool = False) -> Path:
    """Validate and atomically write `run_dir/record.json`.

    `overwrite=False` refuses to replace an existing record (a finished run is evidence); the
    trainer passes `overwrite=True` only when it updates the record of the run it owns (resume).
    """
    path = Path(run_dir) / RECORD_NAME
    if path.exists() and not overwrite:
        raise ChimeraError(f"{path}: a record already exists; choose another --out or pass --resume")
    record = _finite_or_none(record)
    validate_record(record, where=str(path))
    atomic_write_text(path, json.dumps(record, indent=1, sort_keys=False) + "\n")
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


def load_record(path: Path | str) -> dict[str, Any]:
    """Read and validate one record (a record.json or a run folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / RECORD_NAME
    record = read_json(path, "record", fix="it is damaged: restore it from a copy or train the run again")
    if not isinstance(record, dict):
        raise ChimeraError(f"{path}: not a run record (top level is not an object)")
    validate_record(record, where=str(path))
    return record


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


def curve(record: dict[str, Any], key: str) -> list[tuple[int, float]]:
    """(step, value) pairs of one curve metric, skipping evaluations that lack it."""
    return [(point["step"], point[key]) for point in record["curves"] if point.get(key) is not None]


def record_precision(record: dict[str, Any]) -> str:
    """fp32, bf16 or fp16: the precision a record's run trained in. Records written before precision was
    an axis say it only as env.mixed_precision (the value given to accelerate: "no" is fp32)."""
    if record.get("precision"):
        return record["precision"]["value"]
    return precision_from_accelerate((record.get("env") or {}).get("mixed_precision"))
