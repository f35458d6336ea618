"""The ablation table's numbers are paired per-seed differences of the records, signed "with minus without",
marked when a paired t-test finds them within seed noise, and the report shows them (table, figure, ablation.json)
beside the matrix."""

from __future__ import annotations

from dataclasses import replace

import pytest

from chimera.analysis.ablation_effects import (
    METRICS,
    ablation_tables,
    carrying_changes,
    format_effect,
    metrics_for,
    table_rows,
)
from chimera.analysis.report import render_report
from chimera.records.ablation_summary import load_ablation_summary
from chimera.records.record import RunRecord
from chimera.records.store import write_record
from tests.unit.record_factory import change_config, run_record


def with_numbers(cell: str, seed: int, test_acc: float, *, status: str = "completed") -> RunRecord:
    record = run_record("fixed/dense" if "fixed" in cell else "baseline/dense", seed)
    record = replace(record, cell=cell, run_id=f"{cell.replace('/', '-')}-ci-s{seed}", status=status,
                     final_metrics=replace(record.final_metrics, test_acc=test_acc))
    return change_config(record, cell=cell)


FIXED = [0.80, 0.82, 0.81]
FAMILY = {  # cell -> per-seed test acc
    "fixed/dense": FIXED,
    "fixed/dense-without-dropout": [0.70, 0.71, 0.72],  # removing dropout costs 0.10 +- 0.01: it matters
    "fixed/dense-without-depth": [0.79, 0.83, 0.81],  # +0.01, -0.01, 0.00: within noise
    "baseline/dense": [0.60, 0.61, 0.62],
    "baseline/dense-with-lr": [0.65, 0.66, 0.67],  # +0.05 exactly on every seed
}


def family(overrides: dict | None = None) -> dict[str, list[RunRecord]]:
    cells = {**FAMILY, **(overrides or {})}
    return {cell: [with_numbers(cell, seed, acc) for seed, acc in enumerate(accs)] for cell, accs in cells.items()}


def test_effects_are_paired_by_seed_signed_with_minus_without_and_noise_is_marked():
    leave_out, add_in = ablation_tables(family())
    assert (leave_out.start, leave_out.direction, add_in.start, add_in.direction) == (
        "fixed/dense", "without", "baseline/dense", "with")
    assert list(leave_out.effects) == ["depth", "dropout"]  # the fix's order, not the folder's
    dropout = leave_out.effects["dropout"]["test_acc"]
    assert dropout.differences == pytest.approx((0.10, 0.11, 0.09))
    assert dropout.mean == pytest.approx(0.10) and dropout.std == pytest.approx(0.01) and not dropout.within_noise
    assert dropout.ci == pytest.approx(4.3027 * 0.01 / 3 ** 0.5, rel=1e-4)  # t_{0.975, 2} · s / √n
    depth = leave_out.effects["depth"]["test_acc"]
    assert depth.differences == pytest.approx((0.01, -0.01, 0.0)) and depth.within_noise
    lr = add_in.effects["lr"]["test_acc"]
    assert lr.differences == pytest.approx((0.05, 0.05, 0.05)) and not lr.within_noise  # no spread: not noise
    assert [c for c, _ in carrying_changes(leave_out, "test_acc")] == ["dropout"]


def test_formatting_shows_mean_interval_the_noise_mark_and_unpaired_seeds():
    cells = family({"fixed/dense-without-dropout": [0.70, 0.71]})  # seed 2 never ran
    leave_out = ablation_tables(cells)[0]
    text = format_effect(leave_out.effects["dropout"]["test_acc"], "+.3f")
    # two seeds still pair, and the table says so; at 1 degree of freedom the interval is 12.7 standard errors
    # wide each side (12.7 · 0.005), which +0.105 still clears
    assert text == "+0.105 ± 0.064 (2 of 3 seeds)"
    assert format_effect(leave_out.effects["depth"]["test_acc"], "+.3f").endswith("≈")
    header, rows = table_rows(leave_out)
    assert header[0] == "change" and rows[0][0] == "fixed/dense itself"
    assert rows[0][2] == "0.810 ± 0.025"  # ± 4.303 · 0.01 / √3


def test_failed_runs_do_not_pair_and_targets_never_reached_say_so():
    cells = family()
    cells["fixed/dense-without-dropout"][1] = replace(cells["fixed/dense-without-dropout"][1], status="failed")
    cells["baseline/dense"] = [
        replace(record, time_to_target=[replace(entry, reached=False, step=None) for entry in record.time_to_target])
        for record in cells["baseline/dense"]]
    metrics = metrics_for([r for rs in cells.values() for r in rs])
    leave_out, add_in = ablation_tables(cells, metrics)
    dropout = leave_out.effects["dropout"]["test_acc"]
    assert dropout.differences == pytest.approx((0.10, 0.09)) and dropout.unpaired == 1
    key = metrics[-1].key
    assert key.startswith("steps_to_") and format_effect(add_in.effects["lr"][key], "+.0f") == "not reached"


def test_names_outside_the_scheme_or_without_their_start_are_not_ablation_rows():
    cells = family()
    del cells["baseline/dense"]  # add-one-in variants without their start: nothing to pair with
    cells["fixed/dense-without-colour"] = cells.pop("fixed/dense-without-depth")
    (only,) = ablation_tables(cells)
    assert only.start == "fixed/dense" and list(only.effects) == ["dropout"]


def test_the_report_has_the_ablation_section_figure_and_summary_and_keeps_variants_out_of_the_matrix(tmp_path):
    for records in family().values():
        for record in records:
            write_record(record, tmp_path / "runs" / record.run_id)
    files = render_report(tmp_path / "runs", tmp_path / "report", bench_dir=tmp_path / "no-bench")
    markdown = files.markdown.read_text()
    section = markdown.split("## Ablation: which change of the fix matters")[1].split("## Doctor findings")[0]
    assert "### fixed/dense, leave one out" in section and "### baseline/dense, add one in" in section
    assert "| dropout | " in section and "+0.100 ± 0.025 |" in section
    matrix = markdown.split("## Matrix")[1].split("## Time to quality")[0]
    assert "| fixed/dense |" in matrix and "without-dropout" not in matrix
    assert files.images["ablation"].stat().st_size > 10_000
    summary = load_ablation_summary(tmp_path / "report" / "ablation.json")
    dropout = summary.table("without").effects["dropout"]["test_acc"]
    assert dropout.n == 3 and dropout.mean == pytest.approx(0.10) and not dropout.within_noise


def test_metrics_read_what_the_table_promises():
    record = with_numbers("fixed/dense", 0, 0.8)
    by_key = {m.key: m.read(record) for m in METRICS}
    assert by_key["best_val_loss"] == min(p.val_loss for p in record.curves)
    final = record.final_metrics
    assert by_key["gap"] == pytest.approx(final.val_loss - final.clean_train_loss)
    assert by_key["clean_train_loss"] == final.clean_train_loss and by_key["test_acc"] == 0.8
