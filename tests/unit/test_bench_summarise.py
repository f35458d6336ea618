"""bench/summarise.py turns a benchmark JSON into the docs' tables, numbers unchanged."""

from __future__ import annotations

from bench.summarise import summarise
from tests.unit.test_bench_gate import bench_file, entry


def test_every_benchmark_is_a_row_with_its_median_mfu_and_goal_figure(tmp_path):
    peer = entry("test_peer_bert_step[fixed/dense]", "peer", 0.1234, speedup_vs_peer=1.387, samples_per_s=259.3)
    path = bench_file(tmp_path / "b.json", other=(peer,))
    table = summarise(path).splitlines()
    rows = [line for line in table if line.startswith("| test_")]
    assert len(rows) == 6  # calibration + 4 train steps + the peer
    assert rows[-1].startswith("| test_peer_bert_step[fixed/dense] | 123.4 |")
    assert "259" in rows[-1] and "speedup_vs_peer 1.39" in rows[-1]
    assert any(line.startswith("| test_train_step[fixed/dense] | 110.0 |") for line in rows)


def test_the_cells_table_has_one_row_per_train_step_with_the_peers_speedup_of_the_same_precision(tmp_path):
    from bench.summarise import summarise_cells

    peer = entry("test_peer_bert_step[fp32-fixed/dense]", "peer", 0.15, cell="fixed/dense", precision="fp32",
                 speedup_vs_peer=1.4211)
    steps = [entry(f"test_train_step[{p}-fixed/dense]", "train-step", 0.1, cell="fixed/dense", precision=p,
                   samples_per_s=320.0, mfu=0.5) for p in ("fp32", "bf16")]
    table = summarise_cells(bench_file(tmp_path / "b.json", steps={}, other=(*steps, peer))).splitlines()
    rows = [line for line in table if line.startswith("| fixed/dense")]
    assert rows[0].startswith("| fixed/dense | fp32 | 100 ms | 320 | 50% |") and rows[0].endswith("| 1.42× |")
    assert rows[1].startswith("| fixed/dense | bf16 |") and rows[1].endswith("|  |")  # no bf16 peer: blank
    assert len(rows) == 2  # the calibration GEMM and the peer are not cells


def ttq_entry(**targets) -> dict:
    """A time-to-quality benchmark entry as bench/test_bench_ttq.py writes it (bench/ttq_compare.py's rows)."""
    return entry("test_time_to_quality_vs_trainer_peer", "time-to-quality", 300.0, cell="fixed/dense",
                 targets=targets, **{"ratio_at_0.75": (targets.get("val_acc@0.75") or {}).get("wall_ratio")})


def ttq_row(target: float, ours: tuple | None, peer: tuple | None) -> dict:
    """(step, wall_s, train_s) per side, None when that side never reached the target."""
    row = {"metric": "val_acc", "target": target}
    for side, values in (("ours", ours), ("peer", peer)):
        step, wall_s, train_s = values or (None, None, None)
        row |= {f"{side}_step": step, f"{side}_samples": None if step is None else step * 32,
                f"{side}_wall_s": wall_s, f"{side}_train_s": train_s}
    row["wall_ratio"] = peer[1] / ours[1] if ours and peer else None
    return row


def test_the_time_to_quality_table_has_one_row_per_target_with_both_clocks_and_the_ratio(tmp_path):
    from chimera.analysis.bench_tables import ttq_table
    from chimera.records.bench_report import load_bench_report

    ttq = ttq_entry(**{"val_acc@0.7": ttq_row(0.7, (180, 48.71, 28.4), (500, 163.5, 112.7)),
                       "val_acc@0.8": ttq_row(0.8, (320, 95.0, 54.9), None)})
    table = ttq_table(load_bench_report(bench_file(tmp_path / "b.json", other=(ttq,))))
    assert table[2] == "| 0.70 | 180, 48.7 (28.4) | 500, 163.5 (112.7) | **3.36×** |"
    assert table[3] == "| 0.80 | 320, 95.0 (54.9) | not reached | n/a |"
    assert len(table) == 4


def test_the_cells_header_names_the_gemm_each_precisions_mfu_divides_by():
    """fp32 rows divide by the fp32 GEMM, bf16 rows by the bf16 one: a pass with both names both."""
    from pathlib import Path

    from chimera.analysis.bench_tables import cells_table
    from chimera.records.bench_report import load_bench_report

    results = Path(__file__).resolve().parents[2] / "docs" / "results" / "bench"
    both = cells_table(load_bench_report(results / "cpu-xeon-amx.json"))[0]
    assert "2048² GEMM in the row's precision: fp32 894, bf16 1696 GFLOP/s" in both
    assert "2048² fp32 GEMM, 130 GFLOP/s" in cells_table(load_bench_report(results / "cpu.json"))[0]
