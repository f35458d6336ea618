"""`chimera --version` names the release, and the three places a version lives agree."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

import pytest

import chimera
from tests.helpers import run_chimera

REPO = Path(__file__).resolve().parents[2]


def test_version_flag_prints_the_package_version():
    done = run_chimera("--version")
    assert done.stdout.strip() == f"chimera {chimera.__version__}"


def test_package_version_is_pyprojects():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert chimera.__version__ == project["version"]


def test_installed_metadata_matches_the_source():
    try:
        installed = importlib.metadata.version("chimera-bench")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("chimera-bench is not installed (pip install -e .)")
    assert installed == chimera.__version__, "stale install: rerun pip install -e . --no-deps"


def test_license_is_the_mit_text_pyproject_declares():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"
    assert (REPO / "LICENSE").read_text().startswith("MIT License\n")
