"""`chimera reproduce` on a real run: the record alone rebuilds it bit for bit, and changed data is refused.

    CHIMERA_DATA_DIR=../shared/data/ag_news pytest tests/integration/test_reproduce_real.py
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from chimera.records.store import load_record, write_record
from tests.helpers import TINY, quiet_env, run_chimera, sets

pytestmark = pytest.mark.integration

RUN = "baseline-dense-ci-s0"


@pytest.fixture(scope="module")
def original(data_slice, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("original")
    run_chimera("train", "--cell", "baseline/dense", "--profile", "ci", "--device", "cpu", "--quiet", "--out",
                str(out), "--data-dir", str(data_slice), *sets(*TINY), env=quiet_env())
    return out / RUN / "record.json"


def test_reproducing_a_doctored_record_reports_exactly_the_doctored_metric(original, data_slice, tmp_path):
    """One run proves both halves: everything else reproduces bit for bit, and a difference is printed."""
    record = load_record(original)
    honest = record.curves[1].val_loss
    curves = list(record.curves)
    curves[1] = replace(curves[1], val_loss=honest + 1e-12)
    record = replace(record, curves=curves)
    doctored = write_record(record, tmp_path / "doctored")

    done = run_chimera("reproduce", str(doctored), "--out", str(tmp_path / "out"), "--data-dir", str(data_slice),
                       "--quiet", check=False, env=quiet_env())
    assert done.returncode == 1, done.stderr[-2000:]
    step = record.curves[1].step
    assert "1 metric(s) differ" in done.stdout, done.stdout
    assert f"curves[step={step}].val_loss: {honest + 1e-12!r} -> {honest!r}" in done.stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [RUN]  # written under --out only
    assert load_record(tmp_path / "out" / RUN).curves[1].val_loss == honest


def test_data_that_changed_on_disk_is_refused_before_training(original, data_slice, tmp_path):
    changed = tmp_path / "changed"
    shutil.copytree(data_slice, changed)
    train = changed / "train.csv"
    train.write_text(train.read_text(encoding="utf-8").replace(" the ", " teh "), encoding="utf-8")

    done = run_chimera("reproduce", str(original), "--out", str(tmp_path / "out"), "--data-dir", str(changed),
                       "--quiet", check=False, env=quiet_env())
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "the train subset on disk differs from the recorded one" in lines[0], done.stderr
    assert list((tmp_path / "out").rglob("*")) == []  # nothing written, not even an empty run folder
