"""scripts/container_base.sh and scripts/container_run.sh against a fake engine that records its calls.

The real engine runs in tests/container and in CI (scripts/container_check.sh); here the decisions
are checked on any machine: which base image is chosen, which user the container runs as, what is
mounted, and that bad input is one line with exit 2.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FAKE_ENGINE = """#!/usr/bin/env bash
echo "$*" >> "{log}"
case "$1 $2" in
  "--version "*) echo "podman version 4.3.1" ;;
  "image inspect") grep -qxF "$3" "{have}" ;;
  "pull "*) exit 1 ;;
esac
"""


@pytest.fixture
def engine(tmp_path) -> tuple[Path, Path, Path]:
    """(engine script, call log, file listing the images the engine 'has')."""
    log, have = tmp_path / "calls.log", tmp_path / "images"
    have.write_text("")
    script = tmp_path / "fake-engine"
    script.write_text(FAKE_ENGINE.format(log=log, have=have))
    script.chmod(0o755)
    return script, log, have


def run(script: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO / "scripts" / script), *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=60)


def test_base_uses_the_requested_image_when_the_engine_has_it(engine):
    script, log, have = engine
    have.write_text("docker.io/library/python:3.11.16-slim-bookworm\n")
    done = run("container_base.sh", env={"DOCKER": str(script)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "docker.io/library/python:3.11.16-slim-bookworm"
    assert "pull" not in log.read_text()


def test_base_falls_back_to_the_local_bootstrap_when_nothing_can_be_pulled(engine):
    script, log, have = engine
    have.write_text("localhost/chimera-base:bookworm\n")
    done = run("container_base.sh", "registry.example/python:3.11.16", env={"DOCKER": str(script)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "localhost/chimera-base:bookworm"  # stdout is only the image name
    assert "cannot pull registry.example/python:3.11.16" in done.stderr
    assert "pull -q registry.example/python:3.11.16" in log.read_text()


@pytest.mark.skipif(os.getuid() != 0, reason="the root caller's path (CI runs as root); non-root is checked below")
def test_a_root_caller_runs_as_uid_1000_and_gets_the_results_back(engine, tmp_path):
    script, log, _ = engine
    data, results = tmp_path / "data", tmp_path / "results"
    data.mkdir()
    done = run("container_run.sh", str(results), "chimera-bench:cpu", "chimera", "train", "--cell", "fixed/dense",
               env={"DOCKER": str(script), "DATA_DIR": str(data)})
    assert done.returncode == 0, done.stderr
    call = shlex.split(log.read_text().splitlines()[-1])
    assert call[:2] == ["run", "--rm"] and call[call.index("--user") + 1] == "1000:1000"
    assert f"{results}:/results" in call and f"{data}:/data:ro" in call
    assert call[-5:] == ["chimera-bench:cpu", "chimera", "train", "--cell", "fixed/dense"]
    assert results.stat().st_uid == 0  # handed back to the caller after the run


def test_a_non_root_caller_runs_as_itself_with_podman_keeping_the_ids():
    # Outside pytest's private tmp folder, which an unprivileged user cannot enter.
    with tempfile.TemporaryDirectory() as shared_name:
        shared = Path(shared_name)
        shared.chmod(0o777)
        log, have, results = shared / "calls.log", shared / "images", shared / "results"
        have.write_text("")
        log.write_text("")
        log.chmod(0o666)
        script = shared / "fake-engine"
        script.write_text(FAKE_ENGINE.format(log=log, have=have))
        script.chmod(0o755)
        # root drops to an unprivileged user, as a developer would call it
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.getuid() == 0 else []
        done = subprocess.run([*prefix, "bash", str(REPO / "scripts/container_run.sh"), str(results), "img"],
                              capture_output=True, text=True, timeout=60,
                              env={**os.environ, "DOCKER": str(script), "DATA_DIR": ""})
        assert done.returncode == 0, done.stderr
        call = shlex.split(log.read_text().splitlines()[-1])
    uid = 65534 if prefix else os.getuid()
    assert call[call.index("--user") + 1].startswith(f"{uid}:") and "--userns=keep-id" in call
    assert "CHIMERA_DATA_DIR=" in call  # no data folder: the container loads AG News from the hub


def test_a_data_dir_that_is_not_a_folder_is_one_line_and_exit_2(engine, tmp_path):
    script, log, _ = engine
    done = run("container_run.sh", str(tmp_path / "results"), "img",
               env={"DOCKER": str(script), "DATA_DIR": str(tmp_path / "missing")})
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "is not a folder" in done.stderr
    assert not log.exists() or "run" not in log.read_text()
