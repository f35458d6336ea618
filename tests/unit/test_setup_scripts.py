"""What `make setup` decides on a fresh machine: where torch comes from, where WordNet comes from.

scripts/torch_index_args.sh and scripts/prepare_wordnet.sh run for real; apt-get is replaced by a fake on
PATH and NLTK's downloader is pointed at a closed port, so no test depends on the network or on root.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEBIAN_WORDNET = Path("/usr/share/wordnet")
CLOSED_PORT = "http://127.0.0.1:9"  # the discard port: nothing listens there


def run(script: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO / "scripts" / script), *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)


def fake_apt(tmp_path: Path, body: str) -> str:
    """A PATH whose apt-get runs `body` (sh) instead of the real one."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "apt-get").write_text(f"#!/bin/sh\n{body}\n")
    (shim / "apt-get").chmod(0o755)
    return f"{shim}{os.pathsep}{os.environ['PATH']}"


def test_an_empty_torch_index_leaves_pip_as_configured():
    done = run("torch_index_args.sh", "", env={})
    assert done.returncode == 0 and done.stdout == ""


def test_an_unreachable_torch_index_costs_seconds_and_adds_no_flag():
    started = time.monotonic()
    done = run("torch_index_args.sh", f"{CLOSED_PORT}/whl/cpu", env={"PROBE_TIMEOUT": "2"})
    assert done.returncode == 0 and done.stdout == ""
    assert time.monotonic() - started < 15
    if not Path("/dev/nvidia0").exists():
        assert "could not be reached" in done.stderr


@pytest.mark.slow  # two Python starts importing NLTK, ~6 s
def test_wordnet_setup_says_what_failed_when_neither_nltk_nor_apt_can_install_it(tmp_path):
    done = run("prepare_wordnet.sh", env={
        "PYTHON": sys.executable, "NLTK_DATA": str(tmp_path / "nltk_data"), "NLTK_TIMEOUT": "20",
        "NLTK_DOWNLOAD_URL": f"{CLOSED_PORT}/index.xml", "WORDNET_DEB_DIR": str(tmp_path / "no-debian"),
        "PATH": fake_apt(tmp_path, "echo 'E: Unable to locate package wordnet-base' >&2; exit 100")})
    assert done.returncode == 1
    assert "WordNet could not be installed" in done.stderr
    assert "NLTK's downloader:" in done.stderr and "apt-get install wordnet-base" in done.stderr


@pytest.mark.slow
@pytest.mark.skipif(not (DEBIAN_WORDNET / "data.noun").is_file(), reason="Debian's wordnet-base is not installed")
def test_wordnet_setup_falls_back_to_apt_when_nltk_cannot_download(tmp_path):
    debian = tmp_path / "debian-wordnet"  # where the fake apt-get 'installs' the package
    done = run("prepare_wordnet.sh", env={
        "PYTHON": sys.executable, "NLTK_DATA": str(tmp_path / "nltk_data"),
        "NLTK_DOWNLOAD_URL": f"{CLOSED_PORT}/index.xml", "WORDNET_DEB_DIR": str(debian),
        "PATH": fake_apt(tmp_path, f'[ "$1" = install ] && cp -r {DEBIAN_WORDNET} {debian}; exit 0')})
    assert done.returncode == 0, done.stderr
    assert "NLTK's downloader failed" in done.stderr
    assert f"WordNet ready: 3.0 at {tmp_path / 'nltk_data'}" in done.stdout
