"""`chimera history`: records and benchmark JSON of several commits and machines in one store, shown per cell
with the machine-normalised step time and the final metrics, judged by the speed gate's and the loss
bands' own functions; re-adding is a no-op; a corrupt or foreign file is one line and changes nothing."""

from __future__ import annotations

import json
import sqlite3
import statistics
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import pytest

from chimera import cli
from chimera.gates.bands import compute_bands
from chimera.gates.bench_gate import compare
from chimera.history import store as history_store
from chimera.records.record import RunRecord
from chimera.records.store import write_record
from tests.unit.record_factory import run_record

COMMIT_A, COMMIT_B = "a" * 40, "b" * 40
TIME_A, TIME_B = "2026-11-20T10:00:00+00:00", "2026-11-21T10:00:00+00:00"
CALIBRATION_S = 0.1
NORMS_A = {"fixed/dense": 2.0, "fixed/moe": 3.0}
NORMS_B = {"fixed/dense": 2.6, "fixed/moe": 3.03}  # fixed/dense 1.3x slower: beyond the gate's 15%


def bench_json(commit: str, when: str, norms: dict[str, float], *, calibration_s: float = CALIBRATION_S,
               device_name: str = "AMD EPYC") -> dict:
    """A pytest-benchmark JSON as bench/conftest.py writes it: calibration GEMM + one train step per cell."""
    def entry(name, group, median, **extra):
        return {"name": name, "group": group, "stats": {"median": median}, "extra_info": extra}

    benchmarks = [entry("test_calibration_gemm[fp32]", "calibration", calibration_s, dtype="fp32")]
    benchmarks += [entry(f"test_train_step[fp32-{cell}]", "train-step", norm * calibration_s, cell=cell,
                         bench_profile="ci", precision="fp32", samples_per_s=32 / (norm * calibration_s))
                   for cell, norm in norms.items()]
    return {"machine_info": {"node": "vm", "chimera": {"bench_profile": "ci", "device": "cpu",
                                                       "device_name": device_name, "os_cpu_count": 2,
                                                       "load_average_at_start": [1.2, 1.0, 1.0],
                                                       "load_average_at_end": [1.4, 1.1, 1.0]}},
            "commit_info": {"id": commit, "time": when, "dirty": False}, "datetime": when,
            "benchmarks": benchmarks, "version": "5.3.1"}


def record_at(cell: str, seed: int, commit: str | None, when: str, *, val_shift: float = 0.0,
              device_name: str = "AMD EPYC") -> RunRecord:
    record = run_record(cell, seed)
    return replace(
        record, created_at=when,
        env=replace(record.env, git_commit=commit, git_dirty=False, device_type="cpu", device_name=device_name),
        final_metrics=replace(record.final_metrics, val_loss=record.final_metrics.val_loss + val_shift))


def write_results(root: Path, commit: str, when: str, norms: dict[str, float], *, seeds=(0, 1),
                  val_shift: float = 0.0, device_name: str = "AMD EPYC") -> tuple[Path, list[dict]]:
    """runs/<run>/record.json for every cell of `norms` and seed, plus bench/ci.json; returns (root, records)."""
    records = []
    for cell in norms:
        for seed in seeds:
            record = record_at(cell, seed, commit, when, val_shift=val_shift, device_name=device_name)
            write_record(record, root / "runs" / f"{cell.replace('/', '-')}-ci-s{seed}")
            records.append(record)
    (root / "bench").mkdir(parents=True)
    (root / "bench" / "ci.json").write_text(json.dumps(bench_json(commit, when, norms, device_name=device_name)))
    return root, records


def history(*args: str, capsys) -> tuple[int, str, str]:
    code = cli.main(["history", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def dump(store: Path) -> list[str]:
    with sqlite3.connect(store) as db:
        return list(db.iterdump())


def cell_table(out: str, cell: str) -> list[dict[str, str]]:
    """The rows of one cell's table in `chimera history` output, as {column: text} (columns split on 2+ spaces)."""
    import re

    block = out.split(f"{cell} · profile ci · fp32\n", 1)[1].split("\n\n", 1)[0].splitlines()
    header = re.split(r"\s{2,}", block[0].strip())
    return [dict(zip(header, re.split(r"\s{2,}", line.strip()), strict=True)) for line in block[1:]]


@pytest.fixture
def two_commits(tmp_path):
    """Commits A and B, two seeds of two cells each, B's fixed/dense step 1.3x slower; bands.json from A's runs."""
    a, records_a = write_results(tmp_path / "a", COMMIT_A, TIME_A, NORMS_A)
    b, records_b = write_results(tmp_path / "b", COMMIT_B, TIME_B, NORMS_B)
    (tmp_path / "bands.json").write_text(json.dumps(compute_bands(records_a)))
    return tmp_path / "history.sqlite", (a, records_a), (b, records_b)


def test_two_commits_show_both_with_normalised_step_times_metrics_and_the_failed_gate(two_commits, capsys):
    store, (a, records_a), (b, records_b) = two_commits
    assert history("add", str(a), str(b), "--store", str(store), capsys=capsys)[0] == 0
    code, out, err = history("--store", str(store), "--bands", str(store.parent / "bands.json"), capsys=capsys)
    assert code == 0, err
    gate = {row.name: row for row in compare(b / "bench" / "ci.json", a / "bench" / "ci.json")}  # the gate itself
    for cell in NORMS_A:
        rows = cell_table(out, cell)
        assert [r["commit"] for r in rows] == [COMMIT_A[:10], COMMIT_B[:10]]  # commit order
        assert all(r["machine"] == "cpu: AMD EPYC" for r in rows)
        expected = gate[f"test_train_step[fp32-{cell}]"]
        assert float(rows[0]["step/GEMM"]) == pytest.approx(expected.baseline_norm, abs=5e-4)
        assert float(rows[1]["step/GEMM"]) == pytest.approx(expected.new_norm, abs=5e-4)
        assert rows[0]["speed gate"] == "new" and rows[1]["speed gate"] == expected.verdict
        assert [r["loss gate"] for r in rows] == ["ok", "ok"]  # B's runs repeat A's seeds exactly
        assert float(rows[1]["vs prev"]) == pytest.approx(expected.ratio, abs=5e-4)
        for row, records in ((rows[0], records_a), (rows[1], records_b)):
            mine = [r for r in records if r.cell == cell]
            assert row["runs"] == "2 (0, 1)"
            for column, key in (("clean train", "clean_train_loss"), ("val loss", "val_loss"), ("val acc", "val_acc"),
                                ("test acc", "test_acc")):
                mean = statistics.fmean(getattr(m.final_metrics, key) for m in mine)
                assert float(row[column]) == pytest.approx(mean, abs=5e-5)
    assert gate["test_train_step[fp32-fixed/dense]"].verdict == "REGRESSION"
    assert gate["test_train_step[fp32-fixed/moe]"].verdict == "ok"
    flagged = out.split("gates would have failed at:", 1)[1].strip().splitlines()
    assert len(flagged) == 1 and flagged[0].startswith(f"{COMMIT_B[:10]} on cpu: AMD EPYC: fixed/dense ci fp32")
    assert "speed REGRESSION (1.30× the previous commit" in flagged[0]


def test_adding_the_same_files_again_changes_nothing(two_commits, capsys):
    store, (a, _), (b, _) = two_commits
    code, out, _ = history("add", str(a), "--store", str(store), capsys=capsys)
    assert code == 0 and "added 5 file(s) (4 run record(s), 1 benchmark file(s)); 0 already" in out
    before, shown = dump(store), history("--store", str(store), capsys=capsys)[1]
    code, out, _ = history("add", str(a), str(a / "runs"), "--store", str(store), capsys=capsys)
    assert code == 0 and "added 0 file(s)" in out and "9 already in the store" in out
    assert dump(store) == before and history("--store", str(store), capsys=capsys)[1] == shown
    copy = b / "copy-of-a-record.json"  # the same content under another name is the same file
    copy.write_bytes(next((a / "runs").rglob("record.json")).read_bytes())
    assert "added 0 file(s)" in history("add", str(copy), "--store", str(store), capsys=capsys)[1]


def _columns(store: Path) -> tuple[list[str], str]:
    """(the runs table's columns, the store's schema version)."""
    with closing(sqlite3.connect(store)) as db:
        return ([row[1] for row in db.execute("PRAGMA table_info(runs)")],
                db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])


def test_a_version_1_store_reads_its_train_loss_column_as_the_clean_train_loss_and_the_next_add_renames_it(
        two_commits, capsys):
    store, (a, records_a), (b, _) = two_commits
    history("add", str(a), "--store", str(store), capsys=capsys)
    shown, rows = history("--store", str(store), capsys=capsys)[1], history_store.load(store).runs
    with closing(sqlite3.connect(store)) as db, db:  # the store as version 1 wrote it
        db.execute("ALTER TABLE runs RENAME COLUMN clean_train_loss TO train_loss")
        db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    assert history("--store", str(store), capsys=capsys)[1] == shown
    assert history_store.load(store).runs == rows  # read as it is: showing changes nothing
    assert sorted(r.clean_train_loss for r in rows.values()) == sorted(
        r.final_metrics.clean_train_loss for r in records_a)
    columns, version = _columns(store)
    assert version == "1" and "train_loss" in columns  # reading migrates nothing
    assert history("add", str(b), "--store", str(store), capsys=capsys)[0] == 0
    columns, version = _columns(store)
    assert version == "2" and "clean_train_loss" in columns and "train_loss" not in columns
    assert {sha: row for sha, row in history_store.load(store).runs.items() if sha in rows} == rows


CORRUPT = {
    "truncated JSON": ("broken.json", '{"benchmarks": [', "not a readable JSON results file"),
    "foreign JSON": ("other.json", '{"hello": "world"}', "neither a run record (record.json) nor a pytest-benchmark"),
    "record off its schema": ("record.json", None, "does not match the run-record schema"),
    "benchmark without calibration": ("nocal.json", None, "fp32 calibration GEMM benchmark(s)"),
    "not UTF-8": ("latin.json", b'{"a": "\xe9"}', "not a readable JSON results file"),
}


@pytest.mark.parametrize("case", list(CORRUPT))
def test_a_corrupt_or_foreign_file_is_one_line_exit_2_and_the_store_is_unchanged(two_commits, capsys, case):
    store, (a, _), (b, _) = two_commits
    assert history("add", str(a), "--store", str(store), capsys=capsys)[0] == 0
    before = dump(store)
    name, content, fragment = CORRUPT[case]
    bad = b / "bad" / name
    bad.parent.mkdir()
    if case == "record off its schema":
        record = record_at("fixed/dense", 3, COMMIT_B, TIME_B).to_json()
        del record["final_metrics"]
        content = json.dumps(record)
    elif case == "benchmark without calibration":
        data = bench_json(COMMIT_B, TIME_B, NORMS_B)
        data["benchmarks"] = data["benchmarks"][1:]
        content = json.dumps(data)
    bad.write_bytes(content if isinstance(content, bytes) else content.encode())
    code, out, err = history("add", str(b / "runs"), str(bad), "--store", str(store), capsys=capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert str(bad) in lines[0] and fragment in lines[0]
    assert dump(store) == before, "nothing may change: not even the valid files given with it"


def test_a_refused_first_add_creates_no_store(tmp_path, capsys):
    (tmp_path / "bad.json").write_text("[1, 2]")
    code, _, err = history("add", str(tmp_path / "bad.json"), "--store", str(tmp_path / "h.sqlite"), capsys=capsys)
    assert code == 2 and not (tmp_path / "h.sqlite").exists()


@pytest.mark.parametrize("kind", ["text file", "another sqlite database"])
def test_a_store_that_is_not_a_history_store_is_refused_and_left_alone(tmp_path, capsys, kind):
    store = tmp_path / "store.sqlite"
    if kind == "text file":
        store.write_text("not a database, " * 100)
    else:
        with sqlite3.connect(store) as db:
            db.execute("CREATE TABLE notes (text TEXT)")
    before = store.read_bytes()
    _, records = write_results(tmp_path / "a", COMMIT_A, TIME_A, NORMS_A, seeds=(0,))
    for args in (("add", str(tmp_path / "a")), ("show",)):
        code, _, err = history(*args, "--store", str(store), capsys=capsys)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and f"--store {store}: " in lines[0], err
    assert store.read_bytes() == before


def test_show_without_a_store_says_how_to_make_one_and_creates_nothing(tmp_path, capsys):
    code, _, err = history("--store", str(tmp_path / "none.sqlite"), capsys=capsys)
    assert code == 2 and "no history store yet; add results with chimera history add" in err
    assert not (tmp_path / "none.sqlite").exists()


def test_the_store_defaults_to_chimera_history_env(tmp_path, capsys, monkeypatch):
    a, _ = write_results(tmp_path / "a", COMMIT_A, TIME_A, NORMS_A, seeds=(0,))
    monkeypatch.setenv("CHIMERA_HISTORY", str(tmp_path / "env.sqlite"))
    assert history("add", str(a), capsys=capsys)[0] == 0 and (tmp_path / "env.sqlite").exists()
    assert COMMIT_A[:10] in history("show", capsys=capsys)[1]


def test_the_loss_gate_flags_a_commit_whose_runs_leave_the_bands(tmp_path, capsys):
    store, bands = tmp_path / "h.sqlite", tmp_path / "bands.json"
    a, records = write_results(tmp_path / "a", COMMIT_A, TIME_A, {"fixed/dense": 2.0}, seeds=range(5))
    bands.write_text(json.dumps(compute_bands(records, min_seeds=5)))
    b, _ = write_results(tmp_path / "b", COMMIT_B, TIME_B, {"fixed/dense": 2.0}, seeds=(0, 1), val_shift=1.0)
    history("add", str(a), str(b), "--store", str(store), capsys=capsys)
    code, out, err = history("--store", str(store), "--bands", str(bands), capsys=capsys)
    assert code == 0, err
    rows = cell_table(out, "fixed/dense")
    assert [r["loss gate"] for r in rows] == ["ok", "FAIL 2 of 2"]
    assert [r["speed gate"] for r in rows] == ["new", "ok"]
    flagged = out.split("gates would have failed at:", 1)[1].strip().splitlines()
    assert flagged == [f"{COMMIT_B[:10]} on cpu: AMD EPYC: fixed/dense ci fp32: loss bands (2 of 2 runs outside: "
                       "val_loss)"]


def test_without_bands_the_packaged_ones_judge_the_runs_as_bands_check_does(tmp_path, capsys):
    """These synthetic runs are not the packaged ci config, so `bands check` fails them (`config`); so does history.
    A profile without packaged bands reads `no bands` and is not flagged."""
    store = tmp_path / "h.sqlite"
    a, _ = write_results(tmp_path / "a", COMMIT_A, TIME_A, {"fixed/dense": 2.0}, seeds=(0,))
    assert cli.main(["bands", "check", str(a / "runs")]) == 1 and "config differs" in capsys.readouterr().out
    other = replace(record_at("fixed/dense", 0, COMMIT_B, TIME_B), profile="smoke", run_id="fixed-dense-smoke-s0")
    write_record(other, tmp_path / "b" / "fixed-dense-smoke-s0")
    history("add", str(a), str(tmp_path / "b"), "--store", str(store), capsys=capsys)
    out = history("--store", str(store), capsys=capsys)[1]
    assert [r["loss gate"] for r in cell_table(out, "fixed/dense")] == ["FAIL 1 of 1"]
    assert "loss bands (1 of 1 runs outside: config)" in out
    smoke = out.split("fixed/dense · profile smoke · fp32\n", 1)[1].split("\n\n", 1)[0]
    assert smoke.splitlines()[1].rstrip().endswith("no bands")


def test_machines_are_kept_apart_and_each_compared_with_its_own_previous_commit(tmp_path, capsys):
    store = tmp_path / "h.sqlite"
    a, _ = write_results(tmp_path / "a", COMMIT_A, TIME_A, {"fixed/dense": 2.0}, seeds=(0,))
    b, _ = write_results(tmp_path / "b", COMMIT_B, TIME_B, {"fixed/dense": 2.1}, seeds=(0,))
    # another machine, slower per GEMM: only its own history judges it
    c, _ = write_results(tmp_path / "c", COMMIT_B, TIME_B, {"fixed/dense": 4.0}, seeds=(0,), device_name="Xeon")
    history("add", str(a), str(b), str(c), "--store", str(store), capsys=capsys)
    rows = cell_table(history("--store", str(store), capsys=capsys)[1], "fixed/dense")
    assert [(r["commit"], r["machine"], r["speed gate"]) for r in rows] == [
        (COMMIT_A[:10], "cpu: AMD EPYC", "new"), (COMMIT_B[:10], "cpu: AMD EPYC", "ok"),
        (COMMIT_B[:10], "cpu: Xeon", "new")]


def test_folders_yield_records_and_benchmark_json_but_not_run_state(tmp_path):
    from chimera.history.ingest import results_files

    a, _ = write_results(tmp_path / "a", COMMIT_A, TIME_A, {"fixed/dense": 2.0}, seeds=(0,))
    state = a / "runs" / "fixed-dense-ci-s0" / "checkpoint"
    state.mkdir()
    (state / "loop_state.json").write_text("{}")
    unfinished = a / "runs" / "fixed-dense-ci-s1" / "checkpoint"
    unfinished.mkdir(parents=True)
    (unfinished / "loop_state.json").write_text("{}")
    assert results_files([a]) == [a / "bench" / "ci.json", a / "runs" / "fixed-dense-ci-s0" / "record.json"]


def test_records_without_a_commit_take_commit_or_read_unknown(tmp_path, capsys):
    store = tmp_path / "h.sqlite"
    run_dir = tmp_path / "runs" / "fixed-dense-ci-s0"
    write_record(record_at("fixed/dense", 0, None, TIME_A), run_dir)
    history("add", str(run_dir), "--store", str(store), "--commit", "v1.0", capsys=capsys)
    rows = cell_table(history("--store", str(store), capsys=capsys)[1], "fixed/dense")
    assert [r["commit"] for r in rows] == ["v1.0"]
    other = tmp_path / "runs2" / "fixed-dense-ci-s1"
    write_record(record_at("fixed/dense", 1, None, TIME_B), other)
    history("add", str(other), "--store", str(store), capsys=capsys)
    rows = cell_table(history("--store", str(store), capsys=capsys)[1], "fixed/dense")
    assert [r["commit"] for r in rows] == ["v1.0", "unknown"]


def test_the_report_draws_the_history(two_commits, capsys):
    from chimera.analysis.report import render_report
    from chimera.history.figure import figure_size
    from tests.report_checks import assert_figure

    store, (a, _), (b, _) = two_commits
    history("add", str(a), str(b), "--store", str(store), capsys=capsys)
    one_run = next((b / "runs").iterdir())  # the report's own figures cost seconds per cell: draw one run
    files = render_report(one_run, b.parent / "report", bench_dir=b / "no-bench", history=store)
    assert_figure(files.images["history"], size_inches=figure_size([None, None]), dpi=100,
                  colours=("tab:blue", "tab:red"))
    section = files.markdown.read_text().split("## History", 1)[1]
    assert COMMIT_A[:10] in section and COMMIT_B[:10] in section and "REGRESSION" in section
    assert f"{COMMIT_B[:10]} on cpu: AMD EPYC: fixed/dense ci fp32: speed REGRESSION" in section
    assert files.html.read_text().count("data:image/png;base64,") == len(files.images)


def test_a_benchmark_the_next_commit_no_longer_runs_is_flagged_missing_as_the_gate_does(tmp_path, capsys):
    store = tmp_path / "h.sqlite"
    a, _ = write_results(tmp_path / "a", COMMIT_A, TIME_A, NORMS_A, seeds=(0,))
    b, _ = write_results(tmp_path / "b", COMMIT_B, TIME_B, {"fixed/dense": 2.0}, seeds=(0,))
    history("add", str(a), str(b), "--store", str(store), capsys=capsys)
    out = history("--store", str(store), capsys=capsys)[1]
    rows = cell_table(out, "fixed/moe")
    assert [(r["commit"], r["step/GEMM"], r["speed gate"]) for r in rows] == [(COMMIT_A[:10], "3.000", "new"),
                                                                          (COMMIT_B[:10], "-", "missing")]
    assert f"{COMMIT_B[:10]} on cpu: AMD EPYC: fixed/moe ci fp32: speed missing (benchmark missing" in out
    assert {row.name: row.verdict for row in compare(b / "bench" / "ci.json", a / "bench" / "ci.json")}[
        "test_train_step[fp32-fixed/moe]"] == "missing"
