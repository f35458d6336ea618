"""The README's results table, rendered from run records (so every number in it comes from a record).

    python scripts/results_table.py docs/results/full [--target 0.75]

One row per cell: seeds (with the status of a run that did not finish), steps trained, clean train
loss (minimum over the run and final), val loss, val and test accuracy, best step, time to the
target val accuracy (wall seconds, evaluations included) and the doctor's verdict (errors and
warnings by code). Mean ± sample std over seeds where they differ.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from chimera.analysis.doctor import diagnose
from chimera.analysis.doctor_checks import is_reference
from chimera.analysis.report import fmt_stat, group_by_cell, seeds_label, time_to_target_cell
from chimera.records.record import RunRecord
from chimera.records.store import find_records, load_record

HEADER = ("cell", "seeds", "steps", "min clean train loss", "final clean train loss", "val loss", "val acc", "test acc",
          "best step", "time to val acc {target}", "doctor")


def verdict(records: list[RunRecord], references: list[RunRecord]) -> str:
    """`N error(s): code` / warnings by code over the cell's records; `clean` when neither."""
    counts: Counter = Counter()
    for record in records:
        for finding in diagnose(record, references=references):
            if finding.severity in ("error", "warning"):
                counts[(finding.severity, finding.code)] += 1
    if not counts:
        return "clean"
    n = len(records)
    return ", ".join(f"{severity} `{code}` ({k} of {n})" for (severity, code), k in sorted(counts.items()))


def row(cell: str, records: list[RunRecord], references: list[RunRecord], target: float) -> list[str]:
    metrics = [r.final_metrics for r in records]
    best = [m.best_step for m in metrics]
    min_train = [min(v for _, v in r.curve("clean_train_loss")) for r in records]
    return [cell, seeds_label(records), ", ".join(str(m.steps) for m in metrics),
            fmt_stat(min_train, ".3g"), fmt_stat([m.clean_train_loss for m in metrics], ".3g"),
            fmt_stat([m.val_loss for m in metrics], ".3g"),
            fmt_stat([m.val_acc for m in metrics], ".3f"), fmt_stat([m.test_acc for m in metrics], ".3f"),
            ", ".join(str(b) for b in best), time_to_target_cell(records, "val_acc", target),
            verdict(records, references)]


def table_lines(run_dir: Path, target: float = 0.75) -> list[str]:
    """The markdown table over every record under `run_dir`; scripts/readme_tables.py holds the README to it."""
    loaded = [(path, load_record(path)) for path in find_records([run_dir])]
    references = [r for _, r in loaded if is_reference(r)]
    header = [h.format(target=f"{target:g}") for h in HEADER]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for cell, records in group_by_cell(loaded).items():
        lines.append("| " + " | ".join(row(cell, records, references, target)) + " |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--target", type=float, default=0.75, help="val accuracy target column (default 0.75)")
    args = parser.parse_args()
    print("\n".join(table_lines(args.run_dir, args.target)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
