"""tox.ini and scripts/repro.py: the environments exist, install the pinned sets, and the repro comparison
fails on a changed record (the full `tox -e repro` trains for minutes and is not part of the suite)."""

from __future__ import annotations

import argparse
import configparser
import copy
import dataclasses
import importlib.util
import subprocess
from pathlib import Path

import pytest

from chimera.gates.bands import bands_path
from chimera.records import store as records
from tests.unit.record_factory import run_record

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tox() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(REPO / "tox.ini")
    return parser


def _pins(path: Path) -> dict[str, str]:
    lines = [line.strip() for line in path.read_text().splitlines() if "==" in line and not line.startswith("#")]
    return dict(line.split("==") for line in lines)


def test_every_environment_is_defined(tox):
    assert tox["tox"]["env_list"].replace(" ", "").split(",") == ["py311", "lint"]
    for env in ("repro", "bench", "lint"):
        assert f"testenv:{env}" in tox
    assert "scripts/repro.py" in tox["testenv:repro"]["commands"]
    assert "pytest bench --benchmark-only" in tox["testenv:bench"]["commands"]


def test_test_environments_install_the_pinned_sets_and_the_package_without_resolving_again(tox):
    base = tox["testenv"]
    assert base["deps"].split() == ["-r", "requirements-cpu.txt", "-r", "requirements-dev.txt"]
    assert base["skip_install"] == "true" and "pip install --quiet --no-deps -e ." in base["commands_pre"]
    assert "CHIMERA_*" in base["pass_env"]


def test_lint_pins_match_requirements_dev(tox):
    dev = _pins(REPO / "requirements-dev.txt")
    lint = dict(line.split("==") for line in tox["testenv:lint"]["deps"].split())
    assert lint == {name: dev[name] for name in lint}


def _repro_module():
    spec = importlib.util.spec_from_file_location("repro", REPO / "scripts" / "repro.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_repro_comparison_passes_identical_runs_and_fails_a_changed_one(tmp_path, capsys):
    repro = _repro_module()
    for cell in ("baseline/dense", "fixed/moe"):
        record = run_record(cell)
        records.write_record(record, tmp_path / "first" / cell.replace("/", "-"))
        records.write_record(copy.deepcopy(record), tmp_path / "second" / cell.replace("/", "-"))
    assert repro.compare_runs(tmp_path / "first", tmp_path / "second")
    assert capsys.readouterr().out.count("identical") == 2

    changed = records.load_record(tmp_path / "second" / "fixed-moe")
    changed = dataclasses.replace(changed, final_metrics=dataclasses.replace(
        changed.final_metrics, val_loss=changed.final_metrics.val_loss + 1e-9))
    records.write_record(changed, tmp_path / "second" / "fixed-moe", overwrite=True)
    assert not repro.compare_runs(tmp_path / "first", tmp_path / "second")
    assert "fixed/moe: DIFFERENT" in capsys.readouterr().out


def test_repro_checks_bands_for_the_runs_precision_and_skips_where_none_are_packaged(tmp_path, capsys, monkeypatch):
    repro = _repro_module()
    record = run_record("fixed/dense")
    record = dataclasses.replace(record, precision=dataclasses.replace(record.precision, value="bf16"))
    records.write_record(record, tmp_path / "first" / "fixed-dense")
    called = []
    monkeypatch.setattr(repro, "chimera", lambda *args, **kwargs: called.append(args))
    args = argparse.Namespace(profile="ci", overrides=[], out=tmp_path)
    assert repro.check_bands(args)  # no ci-bf16.json is packaged: skipped, not judged against the fp32 bands
    assert "no packaged bands for bf16 runs of the ci profile (ci-bf16.json)" in capsys.readouterr().out
    assert not called


def test_repro_checks_fp32_runs_against_the_packaged_bands_check_bands_would_pick(tmp_path, monkeypatch):
    repro = _repro_module()
    records.write_record(run_record("fixed/dense"), tmp_path / "first" / "fixed-dense")
    called = []
    monkeypatch.setattr(repro, "chimera", lambda *args, **kwargs: called.append(args) or
                        subprocess.CompletedProcess(args, 0, "ok", ""))
    assert repro.check_bands(argparse.Namespace(profile="ci", overrides=[], out=tmp_path))
    assert called == [("bands", "check", str(tmp_path / "first"), "--bands", str(bands_path("ci", "fp32")))]
