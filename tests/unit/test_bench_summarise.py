"""bench/summarise.py turns a benchmark JSON into the README's table, numbers unchanged."""

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
