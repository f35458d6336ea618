"""Automatic checks on run records: findings with severity, the numbers behind them and the fix.

    chimera doctor runs/ci                       # every record.json under a folder
    chimera doctor runs/ci/baseline-dense-ci-s0 --json

Exit code 1 when any finding is an error (CI gates on it), else 0. Reads records only (never
`chimera.train` or `chimera.model`). The checks themselves live in `chimera.analysis.doctor_checks`; this
module runs them and prints the findings.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from chimera.analysis.doctor_checks import (
    SEVERITIES,
    Finding,
    Thresholds,
    check_below_reference,
    check_capacity,
    check_grad_spikes,
    check_leakage,
    check_lr_schedule,
    check_memorisation,
    check_moe,
    check_non_finite,
    check_overfitting,
    check_regularisation,
    check_status,
    check_time_to_target,
    check_tokenisation,
    is_reference,
)
from chimera.records.record import RunRecord
from chimera.records.store import find_records, load_record

DEFAULT_THRESHOLDS = Thresholds()

__all__ = ["SEVERITIES", "Finding", "Thresholds", "diagnose", "doctor_main", "format_evidence", "run_doctor"]


def diagnose(record: RunRecord, *, data_dir: Path | str | None = None, subsets: Any = None,
             thresholds: Thresholds = DEFAULT_THRESHOLDS, references: list[RunRecord] | None = None) -> list[Finding]:
    """All findings for one record, errors first.

    `references`: records diagnosed alongside; those of the linear reference on the same rows are what
    a transformer record is held against (`below_reference`).

    `subsets` (an object with `.train/.val/.test` each having `.texts`, or a mapping of split name to
    texts) replaces the re-derived data in the leakage rescan; tests use it to inject overlaps.
    """
    t = thresholds
    findings = [*check_status(record), *check_memorisation(record, t),
                *check_leakage(record, t, data_dir=data_dir, subsets=subsets), *check_overfitting(record, t),
                *check_capacity(record, t), *check_regularisation(record, t), *check_non_finite(record),
                *check_grad_spikes(record, t), *check_lr_schedule(record), *check_tokenisation(record, t),
                *check_moe(record, t), *check_time_to_target(record),
                *check_below_reference(record, references or [])]
    return sorted(findings, key=lambda f: SEVERITIES.index(f.severity))


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10_000:
        return f"{value:,}"
    return str(value)


def format_evidence(evidence: dict[str, Any]) -> str:
    """`key=value, ...` for the numbers of a finding (example texts are listed separately)."""
    return ", ".join(f"{k}={_format_value(v)}" for k, v in evidence.items() if k != "examples")


def format_findings(path: Path | str, record: RunRecord, findings: list[Finding]) -> str:
    """Human-readable block for one record: severity, title, evidence numbers, fix."""
    lines = [f"{path}  ({record.cell}, {record.profile}, seed {record.seed}, {record.status})"]
    for f in findings:
        lines.append(f"  {f.severity.upper():<8}{f.code}: {f.title}")
        examples = f.evidence.get("examples", [])
        numbers = format_evidence(f.evidence)
        if numbers:
            lines.append(f"          evidence: {numbers}")
        lines += [f"          example: {e}" for e in examples]
        if f.fix:
            lines.append(f"          fix: {f.fix}")
    return "\n".join(lines)


def doctor_main(paths: list[Path | str], *, as_json: bool = False, data_dir: Path | str | None = None,
                out: TextIO | None = None) -> int:
    """Diagnose every record under `paths`; print text or JSON to `out`; 1 if any error, else 0."""
    out = out or sys.stdout
    loaded = [(path, load_record(path)) for path in find_records(list(paths))]
    references = [record for _, record in loaded if is_reference(record)]
    results = [(path, record, diagnose(record, data_dir=data_dir, references=references)) for path, record in loaded]
    errors = sum(f.severity == "error" for _, _, fs in results for f in fs)
    if as_json:
        payload = {"errors": errors, "records": [
            {"path": str(p), "run_id": r.run_id, "cell": r.cell, "seed": r.seed,
             "findings": [asdict(f) for f in fs]} for p, r, fs in results]}
        out.write(json.dumps(payload, indent=1) + "\n")
    else:
        out.write("\n\n".join(format_findings(p, r, fs) for p, r, fs in results) + "\n")
        out.write(f"\n{len(results)} record(s), {errors} error-level finding(s)\n")
    return 1 if errors else 0


def run_doctor(args: argparse.Namespace) -> int:
    """`chimera doctor` (its arguments: chimera/commands.py)."""
    return doctor_main(args.paths, as_json=args.json, data_dir=args.data_dir)
