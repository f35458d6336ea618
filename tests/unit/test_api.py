"""The Python API (chimera/api.py, exported by chimera/__init__.py): `import chimera` loads no torch, a run through
the API returns its typed record and writes it, and `chimera train` / `chimera matrix` go through the same
functions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import chimera
from chimera import api, cli
from chimera.errors import ChimeraError
from chimera.records.record import RunRecord
from chimera.records.store import load_record
from tests.helpers import SYNTHETIC_TINY, quiet_env, write_synthetic_ag_news
from tests.unit.record_factory import minimal_record


def test_import_chimera_is_light_and_the_api_loads_on_first_use():
    code = ("import json, sys, chimera\nbefore = sorted(sys.modules)\nchimera.train_config, chimera.train_matrix\n"
            "print(json.dumps([before, sorted(sys.modules), sorted(dir(chimera))]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=quiet_env(), check=True,
                          timeout=120)
    before, after, names = json.loads(done.stdout)
    assert [m for m in before if m.startswith("chimera")] == ["chimera"]
    assert "torch" not in after and "chimera.train.run" not in after  # the trainer loads when a run starts
    assert {"train_config", "train_matrix", "resolve_config", "load_record", "RunRecord"} <= set(names)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'train_cell'"):
        chimera.train_cell  # noqa: B018


def test_the_api_function_survives_the_trainer_package_being_imported():
    import chimera.train.plan  # binds chimera.train to the package: the reason the API is not named train()

    assert callable(chimera.train_config) and chimera.train_config is api.train_config


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_synthetic_ag_news(tmp_path_factory.mktemp("data"))


def test_a_tiny_run_through_the_api_returns_its_typed_record_and_writes_it(tmp_path, data, restore_torch_state):
    config = chimera.resolve_config("baseline/dense", "ci", seed=3, device="cpu", overrides=SYNTHETIC_TINY)
    assert config.seed == 3 and config.train.max_steps == 20
    record = chimera.train_config(config, out_dir=tmp_path / "runs", data_dir=data, cache_dir=tmp_path / "cache")
    assert isinstance(record, RunRecord)
    assert (record.status, record.cell, record.seed, record.final_metrics.steps) == ("completed", "baseline/dense",
                                                                                    3, 20)
    written = tmp_path / "runs" / "baseline-dense-ci-s3" / "record.json"
    assert load_record(written).to_json() == record.to_json()


def test_a_matrix_through_the_api_returns_one_record_per_cell_and_seed_in_order(tmp_path, data, restore_torch_state):
    records = chimera.train_matrix("ci", cells=["reference/bow"], seeds=(1, 0), out_dir=tmp_path / "runs",
                                   data_dir=data, device="cpu", overrides=SYNTHETIC_TINY,
                                   cache_dir=tmp_path / "cache")
    assert [(r.cell, r.seed, r.status in api.FINISHED) for r in records] == [("reference/bow", 1, True),
                                                                           ("reference/bow", 0, True)]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["reference-bow-ci-s0", "reference-bow-ci-s1"]


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"cells": ["no/such"]}, "--cells no/such: not one of"),
    ({"seeds": (0, 0)}, "a seed is repeated"),
    ({"overrides": ["train.lrr=1"]}, "unknown key 'lrr'"),
    ({"data_dir": "/no/such/folder"}, "data_dir /no/such/folder: no such folder"),
])
def test_bad_matrix_input_is_refused_before_anything_is_written(tmp_path, kwargs, fragment):
    with pytest.raises(ChimeraError, match=fragment):
        chimera.train_matrix("ci", out_dir=tmp_path / "runs", **kwargs)
    assert not (tmp_path / "runs").exists()


def test_resume_must_name_the_run_folder_of_the_config(tmp_path):
    config = chimera.resolve_config("fixed/dense", "ci", device="cpu")
    (tmp_path / "other-run").mkdir()
    with pytest.raises(ChimeraError, match="is not the run folder of fixed/dense seed 0 profile ci"):
        chimera.train_config(config, resume=tmp_path / "other-run")


def test_chimera_train_and_chimera_matrix_call_the_api(monkeypatch, tmp_path):
    calls = []
    record = minimal_record()
    monkeypatch.setattr(api, "train_config", lambda config, **kw: calls.append(("train", config, kw)) or record)
    monkeypatch.setattr(api, "train_matrix", lambda profile, **kw: calls.append(("matrix", profile, kw)) or [record])
    out = tmp_path / "runs"
    assert cli.main(["train", "--cell", "fixed/dense", "--seed", "2", "--out", str(out), "--precision", "fp32",
                     "--set", "train.schedule=cosine", "--device", "cpu", "--quiet"]) == 0
    assert cli.main(["matrix", "--seeds", "0", "1", "--cells", "fixed/dense", "--out", str(out), "--device",
                     "cpu"]) == 0
    (_, config, train_kw), (_, profile, matrix_kw) = calls
    assert (config.cell, config.seed, config.train.schedule, config.train.precision) == ("fixed/dense", 2, "cosine",
                                                                                        "fp32")
    assert train_kw["out_dir"] == out and train_kw["resume"] is None and train_kw["quiet"] is True
    assert profile == "ci" and matrix_kw["seeds"] == [0, 1] and matrix_kw["cells"] == ["fixed/dense"]
