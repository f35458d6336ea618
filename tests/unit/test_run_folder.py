"""Run folders: one writer at a time, stale locks taken over, names that cannot leave --out."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from chimera.config import RunConfig
from chimera.errors import ChimeraError
from chimera.train.run_folder import LOCK, run_dir_for, run_lock
from tests.helpers import SYNTHETIC_TINY, quiet_env, sets, write_synthetic_ag_news


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_held_lock_refuses_a_second_owner_and_names_the_first(tmp_path):
    with run_lock(tmp_path / "run"):
        with pytest.raises(ChimeraError, match=f"in use by pid {os.getpid()}"):
            with run_lock(tmp_path / "run"):
                pass
    assert not (tmp_path / "run").exists()  # released, and the empty folder with it


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK).write_text(f"{_dead_pid()} {socket.gethostname()}\n")
    (run / "record.json").write_text("{}")  # keeps the folder after release
    with run_lock(run):
        assert (run / LOCK).read_text().split()[0] == str(os.getpid())
    assert not (run / LOCK).exists()


def test_a_lock_from_another_host_is_respected(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK).write_text("1 some-other-host\n")
    with pytest.raises(ChimeraError, match="pid 1 on some-other-host"):
        with run_lock(run):
            pass


@pytest.mark.parametrize("cell, profile", [("fixed/dense", "../../etc"), ("fixed/dense", "ci/x"),
                                           ("a/b/c", "ci"), ("../x", "ci"), ("fixed/dense", "/abs")])
def test_run_folder_names_cannot_leave_the_output_folder(cell, profile):
    with pytest.raises(ChimeraError, match="not usable as a run folder name"):
        run_dir_for(RunConfig(cell=cell, profile=profile), Path("out"))


def test_two_runs_into_the_same_folder_at_once_do_not_both_write(tmp_path):
    data = write_synthetic_ag_news(tmp_path / "data")
    args = [sys.executable, "-m", "chimera", "train", "--cell", "baseline/dense", "--profile", "ci", "--device", "cpu",
            "--quiet", "--out", str(tmp_path / "out"), "--data-dir", str(data), "--cache-dir", str(tmp_path / "c"),
            *sets(*SYNTHETIC_TINY)]
    first, second = (subprocess.Popen(args, stderr=subprocess.PIPE, text=True, env=quiet_env()) for _ in range(2))
    results = sorted((p.wait(timeout=300), p.stderr.read()) for p in (first, second))
    assert [code for code, _ in results] == [0, 2], results
    assert ("run folder is in use by pid" in results[1][1] or "already holds a record" in results[1][1]), results
    record = json.loads((tmp_path / "out" / "baseline-dense-ci-s0" / "record.json").read_text())
    assert record["status"] == "completed"
