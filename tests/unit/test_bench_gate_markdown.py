"""The speed gate's table as markdown (`--markdown FILE`, appended: a CI job summary keeps every table)."""

from __future__ import annotations

from chimera import cli
from chimera.gates.bench_gate import compare, format_markdown
from tests.unit.test_bench_gate import bench_file


def test_markdown_table_has_a_row_per_benchmark_and_bold_failures(tmp_path):
    base = bench_file(tmp_path / "base.json")
    rows = compare(bench_file(tmp_path / "slow.json", scale=1.3), base)
    text = format_markdown(rows, title="Speed gate")
    lines = text.splitlines()
    assert lines[0] == "### Speed gate: FAILED"
    table = [line for line in lines if line.startswith("| `test_train_step")]
    assert len(table) == len(rows) == 4
    assert all(line.endswith("| **REGRESSION** |") and "| 1.300 |" in line for line in table)
    assert "0 passed, 4 failed" in text


def test_markdown_option_appends_one_table_per_call_and_keeps_the_exit_code(tmp_path, capsys):
    base, summary = bench_file(tmp_path / "base.json"), tmp_path / "summary.md"
    assert cli.main(["bench", "compare", str(base), str(base), "--markdown", str(summary)]) == 0
    slow = bench_file(tmp_path / "slow.json", scale=1.5)
    assert cli.main(["bench", "compare", str(slow), str(base), "--markdown", str(summary)]) == 1
    text = summary.read_text()
    assert text.count("### Speed gate:") == 2 and ": passed" in text and ": FAILED" in text
    assert "baseline norm" in capsys.readouterr().out  # the plain table still goes to stdout
