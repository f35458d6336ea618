"""The built image, inspected and run: what tests/unit/test_docker.py can only read off the Dockerfile.

Needs a container engine ($DOCKER, else podman, else docker on PATH) and the image ($CHIMERA_IMAGE,
default chimera-bench:cpu, from `make docker-cpu`). Without either the tests skip and say which is
missing; CHIMERA_REQUIRE_IMAGE=1 (set by .ci/run after it builds the image) turns a skip into a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest

pytestmark = pytest.mark.container
REPO = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("CHIMERA_IMAGE", "chimera-bench:cpu")
DEV_ONLY = ("ruff", "tox", "hypothesis", "hadolint")
RUNTIME_MODULES = ("torch", "accelerate", "datasets", "tokenizers", "nltk", "matplotlib", "jsonschema", "chimera",
                   "pytest", "pytest_benchmark", "transformers")


def _unavailable(reason: str):
    if os.environ.get("CHIMERA_REQUIRE_IMAGE") == "1":
        pytest.fail(f"{reason} (CHIMERA_REQUIRE_IMAGE=1)")
    pytest.skip(reason)


@cache
def _engine() -> str | None:
    wanted = os.environ.get("DOCKER")
    candidates = [wanted] if wanted else ["podman", "docker"]
    return next((shutil.which(name) for name in candidates if shutil.which(name)), None)


@pytest.fixture(scope="module")
def engine() -> str:
    found = _engine()
    if found is None:
        _unavailable("no container engine on PATH (podman or docker; or set DOCKER)")
    if subprocess.run([found, "image", "inspect", IMAGE], capture_output=True, timeout=60).returncode != 0:
        _unavailable(f"image {IMAGE} not built (make docker-cpu, or set CHIMERA_IMAGE)")
    return found


@pytest.fixture(scope="module")
def config(engine) -> dict:
    done = subprocess.run([engine, "image", "inspect", IMAGE], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(done.stdout)[0]["Config"]


PROBE = r"""
import importlib.util, json, os, shutil, sys
from nltk.corpus import wordnet
print(json.dumps({
    "uid": os.getuid(), "python": list(sys.version_info[:2]), "prefix": sys.prefix,
    "modules": {name: importlib.util.find_spec(name) is not None for name in sys.argv[1].split(",")},
    "executables": {name: shutil.which(name) for name in sys.argv[2].split(",")},
    "wordnet_synsets": len(wordnet.synsets("market")),
    "device": os.environ.get("CHIMERA_DEVICE"), "data": os.environ.get("CHIMERA_DATA_DIR"),
}))
"""


@pytest.fixture(scope="module")
def inside(engine) -> dict:
    """One container run that reports what the image holds (cheaper than a run per question)."""
    command = [engine, "run", "--rm", IMAGE, "python", "-c", PROBE, ",".join(RUNTIME_MODULES + DEV_ONLY),
               ",".join(DEV_ONLY)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_runs_as_uid_1000_by_default(config, inside):
    assert config["User"] == "1000:1000"
    assert inside["uid"] == 1000


def test_runtime_set_present_and_no_dev_tools(inside):
    missing = [name for name in RUNTIME_MODULES if not inside["modules"][name]]
    assert not missing, f"runtime modules missing from the image: {missing}"
    present = [name for name in DEV_ONLY if inside["modules"][name] or inside["executables"][name]]
    assert not present, f"dev tools in the runtime image: {present}"


def test_python_is_3_11_like_ci_and_the_pinned_sets(inside):
    assert inside["python"] == [3, 11]
    assert inside["prefix"] == "/opt/venv"


def test_wordnet_is_ready_offline(inside):
    assert inside["wordnet_synsets"] > 0


def test_entry_point_and_default_command_run_the_benchmarks_into_results(config):
    assert not config.get("Entrypoint")
    cmd = config["Cmd"]
    assert cmd[:4] == ["pytest", "/app/bench", "-c", "/app/pyproject.toml"] and "--benchmark-only" in cmd
    assert config.get("WorkingDir") == "/results"  # relative outputs (runs/, report/) land in the volume
    assert "--benchmark-json=/results/bench.json" in cmd


def test_volumes_environment_and_labels(config, inside):
    assert {"/data", "/results"} <= set(config.get("Volumes") or {})
    labels = config.get("Labels") or {}
    target = labels.get("org.opencontainers.image.title", "").rpartition("-")[2]  # chimera-bench-<target>
    assert (inside["device"], inside["data"]) == (target, "/data")  # a CUDA image never falls back to the CPU
    for key in ("version", "revision", "source", "title"):
        assert labels.get(f"org.opencontainers.image.{key}"), f"label org.opencontainers.image.{key} missing"
