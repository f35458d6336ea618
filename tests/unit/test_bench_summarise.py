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
    assert "| test_peer_bert_step[fixed/dense] | 123.4 |" in table[-1]
    assert "259" in table[-1] and "speedup_vs_peer 1.39" in table[-1]
    assert any(line.startswith("| test_train_step[fixed/dense] | 110.0 |") for line in rows)
