"""Run records: schema validation, atomic writes that survive a crash, no silent overwrite."""

import dataclasses
import json
import os
import stat

import pytest

from chimera import fileio
from chimera.errors import ChimeraError
from chimera.records import store as records
from tests.unit.record_factory import minimal_record, replaced_at


def test_valid_record_round_trips(tmp_path):
    record = minimal_record()
    path = records.write_record(record, tmp_path)
    assert records.load_record(tmp_path) == record
    assert records.load_record(tmp_path).to_json() == json.loads(path.read_text())


@pytest.mark.parametrize("mutate, pointer", [
    (lambda r: r.pop("curves"), "/"),
    (lambda r: r.update(status="done"), "/status"),
    (lambda r: r["curves"][0].update(val_acc=1.5), "/curves/0/val_acc"),
    (lambda r: r["params"].update(total=-1), "/params/total"),
    (lambda r: r["data"]["fingerprints"].update(train="xyz"), "/data/fingerprints/train"),
    (lambda r: r["events"].append({"step": 1, "kind": "checkpoint"}), "/events/0/kind"),
    (lambda r: r["data"]["token_stats"].update(val={"unk_fraction": 0.1}), "/data/token_stats/val"),
])
def test_schema_violations_name_the_json_pointer(tmp_path, mutate, pointer):
    data = minimal_record().to_json()
    mutate(data)
    (tmp_path / "record.json").write_text(json.dumps(data))
    with pytest.raises(ChimeraError, match="schema at " + pointer):
        records.load_record(tmp_path)


def test_an_invalid_record_is_never_written(tmp_path):
    record = minimal_record()
    record = dataclasses.replace(record, status="done", curves=replaced_at(record.curves, 0, val_acc=1.5))
    with pytest.raises(ChimeraError, match="schema at /"):
        records.write_record(record, tmp_path)
    assert not (tmp_path / "record.json").exists()


def test_a_loaded_record_is_frozen(tmp_path):
    records.write_record(minimal_record(), tmp_path)
    record = records.load_record(tmp_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.status = "failed"
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.final_metrics.val_acc = 1.0
    assert record == minimal_record()


def test_existing_record_is_never_silently_overwritten(tmp_path):
    records.write_record(minimal_record(), tmp_path)
    with pytest.raises(ChimeraError, match="already exists"):
        records.write_record(minimal_record(), tmp_path)


def test_non_finite_numbers_become_null_not_invalid_json(tmp_path):
    record = minimal_record()
    record = dataclasses.replace(record, curves=replaced_at(record.curves, 0, val_loss=float("nan")))
    path = records.write_record(record, tmp_path)
    assert json.loads(path.read_text())["curves"][0]["val_loss"] is None


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_records_get_the_permissions_a_plain_open_would_give(tmp_path, umask):
    """mkstemp makes private 0600 files; a record is meant to be read by others (CI, a shared results folder)."""
    previous = os.umask(umask)
    try:
        path = records.write_record(minimal_record(), tmp_path)
        (tmp_path / "plain").write_text("x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE((tmp_path / "plain").stat().st_mode) == 0o666 & ~umask


def test_crash_between_write_and_rename_leaves_the_previous_file(tmp_path, monkeypatch):
    records.write_record(minimal_record(), tmp_path)
    before = (tmp_path / "record.json").read_bytes()

    def crash(tmp):
        assert tmp.stat().st_size > 0  # the new content was fully written, but never renamed
        raise OSError("simulated power loss")

    monkeypatch.setattr(fileio, "_before_replace", crash)
    changed = dataclasses.replace(minimal_record(), status="failed")
    with pytest.raises(OSError):
        records.write_record(changed, tmp_path, overwrite=True)
    assert (tmp_path / "record.json").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]  # no temp file left behind


def test_find_records_walks_run_folders(tmp_path):
    for name in ("a", "b/c"):
        records.write_record(minimal_record(), tmp_path / name)
    assert len(records.find_records([tmp_path])) == 2
    with pytest.raises(ChimeraError, match="no such"):
        records.find_records([tmp_path / "missing"])


def test_unreadable_record_is_a_clear_error(tmp_path):
    (tmp_path / "record.json").write_text("{truncated")
    with pytest.raises(ChimeraError, match="not a readable JSON record"):
        records.load_record(tmp_path)
