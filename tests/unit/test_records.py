"""Run records: schema validation, atomic writes that survive a crash, no silent overwrite."""

import json

import pytest

from chimera import records
from chimera.errors import ChimeraError


def minimal_record() -> dict:
    fp = "0" * 64
    return {
        "schema_version": 1, "run_id": "fixed-dense-ci-s0", "cell": "fixed/dense", "profile": "ci", "seed": 0,
        "status": "completed", "world_size": 1,
        "config": {"cell": "fixed/dense", "profile": "ci", "seed": 0, "device": "cpu",
                   "data": {}, "augment": {}, "model": {}, "train": {}},
        "env": {"python": "3.11", "torch": "2.13.0", "accelerate": "1.15.0", "datasets": "5", "tokenizers": "0.23",
                "nltk": "3.10", "device_type": "cpu", "device_name": "cpu", "cpu_count": 2},
        "data": {"source": "x", "sizes": {"train": 8, "val": 8, "clean_train": 8, "test": 8}, "label_counts": {},
                 "leakage": {}, "fingerprints": {k: fp for k in ("train", "val", "clean_train", "test")},
                 "tokenizer_sha256": fp, "token_stats": {}},
        "params": {"total": 10, "embedding": 4, "non_embedding": 6, "active": 10},
        "curves": [{"step": 10, "train_loss": 1.0, "clean_train_loss": 0.9, "val_loss": 1.1, "train_acc": 0.5,
                    "val_acc": 0.4, "lr": 1e-4, "grad_norm": 0.5}],
        "timing": [{"step": 10, "step_time_s": 0.1, "samples_per_s": 320.0}],
        "events": [],
        "final_metrics": {"train_loss": 0.9, "val_loss": 1.1, "val_acc": 0.4, "test_loss": 1.2, "test_acc": 0.4,
                          "best_step": 10, "steps": 10, "stopped_early": False, "wall_s": 1.0,
                          "train_samples_per_s": 320.0},
    }


def test_valid_record_round_trips(tmp_path):
    path = records.write_record(minimal_record(), tmp_path)
    assert records.load_record(tmp_path) == json.loads(path.read_text())


@pytest.mark.parametrize("mutate, pointer", [
    (lambda r: r.pop("curves"), "/"),
    (lambda r: r.update(status="done"), "/status"),
    (lambda r: r["curves"][0].update(val_acc=1.5), "/curves/0/val_acc"),
    (lambda r: r["params"].update(total=-1), "/params/total"),
    (lambda r: r["data"]["fingerprints"].update(train="xyz"), "/data/fingerprints/train"),
])
def test_schema_violations_name_the_json_pointer(tmp_path, mutate, pointer):
    record = minimal_record()
    mutate(record)
    with pytest.raises(ChimeraError, match="schema at " + pointer):
        records.write_record(record, tmp_path)
    assert not (tmp_path / "record.json").exists()


def test_existing_record_is_never_silently_overwritten(tmp_path):
    records.write_record(minimal_record(), tmp_path)
    with pytest.raises(ChimeraError, match="already exists"):
        records.write_record(minimal_record(), tmp_path)


def test_non_finite_numbers_become_null_not_invalid_json(tmp_path):
    record = minimal_record()
    record["curves"][0]["val_loss"] = float("nan")
    path = records.write_record(record, tmp_path)
    assert json.loads(path.read_text())["curves"][0]["val_loss"] is None


def test_crash_between_write_and_rename_leaves_the_previous_file(tmp_path, monkeypatch):
    records.write_record(minimal_record(), tmp_path)
    before = (tmp_path / "record.json").read_bytes()

    def crash(tmp):
        assert tmp.stat().st_size > 0  # the new content was fully written, but never renamed
        raise OSError("simulated power loss")

    monkeypatch.setattr(records, "_before_replace", crash)
    changed = minimal_record() | {"status": "failed"}
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
