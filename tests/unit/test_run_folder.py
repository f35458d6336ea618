"""Run folders: one writer at a time, a killed owner's lock no obstacle, names that cannot leave --out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from chimera.config import RunConfig
from chimera.errors import ChimeraError
from chimera.records.store import load_record
from chimera.train.plan import LOCK, run_dir_for, run_lock
from tests.helpers import SYNTHETIC_TINY, quiet_env, sets, write_synthetic_ag_news


def test_a_held_lock_refuses_a_second_owner(tmp_path):
    with run_lock(tmp_path / "run"):
        with pytest.raises(ChimeraError, match="run folder is in use by another process"):
            with run_lock(tmp_path / "run"):
                pass
    assert not (tmp_path / "run").exists()  # released, and the empty folder with it


def test_the_lock_of_a_killed_process_does_not_block_the_next_run(tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom chimera.train.plan import "
                               f"run_lock\nwith run_lock({str(run)!r}):\n    print('held', flush=True)\n"
                               "    time.sleep(300)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ChimeraError, match="in use"):
            with run_lock(run):
                pass
    finally:
        holder.kill()  # SIGKILL: no cleanup runs, the lock file stays behind
        holder.wait()
    (run / "record.json").write_text("{}")  # keeps the folder after release
    assert (run / LOCK).exists()
    with run_lock(run):
        pass
    assert not (run / LOCK).exists()


@pytest.mark.parametrize("cell, profile", [("fixed/dense", "../../etc"), ("fixed/dense", "ci/x"),
                                           ("a/b/c", "ci"), ("../x", "ci"), ("fixed/dense", "/abs")])
def test_run_folder_names_cannot_leave_the_output_folder(cell, profile):
    with pytest.raises(ChimeraError, match="not usable as a run folder name"):
        run_dir_for(RunConfig(cell=cell, profile=profile), Path("out"))


@pytest.mark.slow  # trains in two subprocesses
def test_two_runs_into_the_same_folder_at_once_do_not_both_write(tmp_path):
    data = write_synthetic_ag_news(tmp_path / "data")
    args = [sys.executable, "-m", "chimera", "train", "--cell", "baseline/dense", "--profile", "ci", "--device", "cpu",
            "--quiet", "--out", str(tmp_path / "out"), "--data-dir", str(data), "--cache-dir", str(tmp_path / "c"),
            *sets(*SYNTHETIC_TINY)]
    first, second = (subprocess.Popen(args, stderr=subprocess.PIPE, text=True, env=quiet_env()) for _ in range(2))
    results = sorted((p.wait(timeout=300), p.stderr.read()) for p in (first, second))
    assert [code for code, _ in results] == [0, 2], results
    second = results[1][1]
    assert "run folder is in use by another process" in second or "already holds a record" in second, results
    assert load_record(tmp_path / "out" / "baseline-dense-ci-s0").status == "completed"
