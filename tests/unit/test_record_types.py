"""The record's shape is defined once: the typed classes and record.schema.json agree field by field,
records written now round-trip through the classes byte for byte, records of every earlier schema version
still load (through chimera.records.upgrade), and no module outside chimera/records/ builds a record as a
hand-made dict."""

from __future__ import annotations

import ast
import json
import re
import types as types_module
import typing
from dataclasses import fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from chimera import config as config_types
from chimera.config import AG_NEWS_LABELS, DATASET_DEFAULTS, DEFAULT_TRAIN_POOL
from chimera.errors import ChimeraError
from chimera.records import record as types
from chimera.records.env import ADDED_AFTER_VERSION_1, RunEnv
from chimera.records.store import load_record, load_schema, write_record
from tests.unit.record_factory import CELL_SHAPES, minimal_record, run_record

REPO = Path(__file__).resolve().parents[2]
COMMITTED = sorted((REPO / "docs" / "results").rglob("record.json"))
COMMITTED_V1 = [p for p in COMMITTED if json.loads(p.read_text())["schema_version"] == 1]
COMMITTED_V3 = [p for p in COMMITTED if json.loads(p.read_text())["schema_version"] == 3]
COMMITTED_V4 = [p for p in COMMITTED if json.loads(p.read_text())["schema_version"] == 4]
COMMITTED_V5 = [p for p in COMMITTED if json.loads(p.read_text())["schema_version"] == 5]


def _node(pointer: str) -> dict:
    """The schema object at a path of property names, `[]` for array items, `*` for map values, `#x` for $defs."""
    node = load_schema()
    for part in pointer.split("/") if pointer else []:
        if part == "[]":
            node = node["items"]
        elif part == "*":
            node = node["additionalProperties"]
        elif part.startswith("#"):
            node = load_schema()["$defs"][part[1:]]
        else:
            node = node["properties"][part]
        if "$ref" in node:
            node = load_schema()["$defs"][node["$ref"].rsplit("/", 1)[1]]
    return node


CLASSES = {  # each class and the schema object that describes its JSON
    types.RunRecord: "", types.Precision: "precision", types.DataInfo: "data", types.TokenStats: "data/token_stats/*",
    types.ParamCounts: "params", types.MoeLayerStats: "#evaluation/moe/[]", types.TimingPoint: "timing/[]",
    types.Event: "events/[]", types.FinalMetrics: "final_metrics", types.TargetTime: "time_to_target/[]",
    types.ResumeInfo: "resume", types.Energy: "energy", types.TargetEnergy: "energy/to_target/[]", RunEnv: "env",
    config_types.RunConfig: "config",
    **{cls: f"config/{name}" for name, cls in config_types.SECTIONS.items()},
}


def _json_fields(cls: type) -> tuple[set[str], set[str]]:
    """(always written, written only when set) JSON keys of a class."""
    always = {f.name for f in fields(cls) if not f.metadata.get("absent_when_none")}
    return always, {f.name for f in fields(cls)} - always


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_class_and_its_schema_object_name_the_same_keys(cls):
    node = _node(CLASSES[cls])
    always, optional = _json_fields(cls)
    assert set(node["properties"]) == always | optional
    assert set(node.get("required", [])) == always
    assert node["additionalProperties"] is False  # a key the class does not know is refused, not dropped


# config.py keeps its closed sets of strings as tuples checked in __post_init__ (a --set value is parsed, then
# checked there), not as Literal hints; the schema's enum for each must be the same set.
CONFIG_CLOSED_SETS = {
    (config_types.RunConfig, "device"): config_types.DEVICES,
    (config_types.ModelConfig, "arch"): config_types.ARCHITECTURES,
    (config_types.ModelConfig, "ffn"): config_types.FFN_KINDS,
    (config_types.ModelConfig, "expert_kind"): config_types.EXPERT_KINDS,
    (config_types.TrainConfig, "schedule"): config_types.SCHEDULES,
    (config_types.TrainConfig, "precision"): config_types.PRECISIONS,
    (config_types.TrainConfig, "step_mode"): config_types.STEP_MODES,
}
JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", type(None): "null"}


def _schema_types(node: dict) -> set[str]:
    """The JSON types a schema object allows: its `type`, else those of its `enum` or `const` values."""
    if "$ref" in node:
        node = load_schema()["$defs"][node["$ref"].rsplit("/", 1)[1]]
    if "type" in node:
        return set(node["type"]) if isinstance(node["type"], list) else {node["type"]}
    values = node["enum"] if "enum" in node else [node["const"]]
    return {JSON_TYPES[type(value)] for value in values}


def _hint_types(hint: Any) -> set[str]:
    """The JSON types the writer turns a value of this type hint into."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types_module.UnionType):
        return set().union(*(_hint_types(arg) for arg in typing.get_args(hint)))
    if origin is typing.Literal:
        return {JSON_TYPES[type(value)] for value in typing.get_args(hint)}
    if origin in (list, tuple):
        return {"array"}
    if origin is dict or is_dataclass(hint):
        return {"object"}
    return {JSON_TYPES[hint]}


def _agree(hint: Any, node: dict, where: str, *, absent_when_none: bool = False) -> None:
    """`node` allows exactly the JSON types `hint` is written as, the same closed set for a Literal, and the
    same for array items and map values. A key left out when None may still be null (a non-finite float)."""
    allowed, written = _schema_types(node), _hint_types(hint)
    if absent_when_none:
        allowed, written = allowed - {"null"}, written - {"null"}
    assert allowed == written, f"{where}: the schema allows {sorted(allowed)}, the class writes {sorted(written)}"
    args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    literal = next((a for a in (hint, *args) if typing.get_origin(a) is typing.Literal), None)
    if literal is not None:
        assert set(node["enum"]) - {None} == set(typing.get_args(literal)), where
    inner = args[0] if len(args) == 1 and typing.get_origin(hint) in (typing.Union, types_module.UnionType) else hint
    origin, parts = typing.get_origin(inner), typing.get_args(inner)
    if origin in (list, tuple) and "items" in node and (origin is list or parts[-1] is Ellipsis or
                                                         len(set(parts)) == 1):
        _agree(parts[0], node["items"], f"{where}[]")
    elif origin is dict and isinstance(node.get("additionalProperties"), dict):
        _agree(parts[1], node["additionalProperties"], f"{where}.*")


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_field_is_written_as_the_json_types_closed_set_and_nullability_its_schema_allows(cls):
    node = _node(CLASSES[cls])
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        schema = node["properties"][f.name]
        _agree(hints[f.name], schema, f"{cls.__name__}.{f.name}", absent_when_none=f.metadata.get("absent_when_none"))
        if "enum" in schema and hints[f.name] is str:
            assert set(schema["enum"]) == set(CONFIG_CLOSED_SETS[cls, f.name]), f"{cls.__name__}.{f.name}"


def test_the_config_closed_sets_are_the_ones_config_checks():
    for (cls, name), allowed in CONFIG_CLOSED_SETS.items():
        assert _node(CLASSES[cls])["properties"][name]["enum"] == list(allowed)
        with pytest.raises(ChimeraError, match=name):
            config_types.config_from_dict(_with(config_types.config_to_dict(config_types.RunConfig(
                cell="fixed/dense", profile="ci")), cls, name, "no-such-value"))


def _with(config: dict, cls: type, name: str, value: Any) -> dict:
    """A config dict with one field of section `cls` (or the top level) set to `value`."""
    section = next((key for key, section_cls in config_types.SECTIONS.items() if section_cls is cls), None)
    if section is None:
        return {**config, name: value}
    return {**config, section: {**config[section], name: value}}


def test_a_curve_point_and_its_schema_object_name_the_same_keys():
    node = _node("#evaluation")
    assert set(node["required"]) == {"step", "train_loss", "val_loss", "val_acc", "lr", "grad_norm"}
    assert set(node["properties"]) == set(node["required"]) | {"clean_train_loss", "train_acc", "moe"}
    measured = types.CurvePoint(step=1, train_loss=1.0, val_loss=1.0, val_acc=0.5, lr=1e-3, grad_norm=None,
                                clean_train=types.SplitScore(loss=0.9, acc=0.6))
    assert set(measured.to_json()) == set(node["properties"]) - {"moe"}
    not_measured = types.CurvePoint(step=2, train_loss=1.0, val_loss=1.0, val_acc=0.5, lr=1e-3, grad_norm=None)
    assert set(not_measured.to_json()) == set(node["required"])  # absent, not null: it was not measured


def test_status_and_event_kinds_are_the_closed_sets_the_schema_allows():
    assert set(_node("status")["enum"]) == set(types.STATUSES)
    assert set(_node("events/[]/kind")["enum"]) == set(types.EVENT_KINDS)
    assert "non_finite" in types.EVENT_KINDS  # the doctor's check reads it; the trainer emits it on divergence
    with pytest.raises(ValueError, match="not one of"):
        types.Event(step=1, kind="checkpoint")  # type: ignore[arg-type]


@pytest.mark.parametrize("cell", CELL_SHAPES)
def test_records_round_trip_through_json(cell, tmp_path):
    record = run_record(cell, seed=1)
    early_stop = types.Event(step=25, kind="early_stop", detail="no val-loss gain")
    record = replace(record, events=[*record.events, early_stop], resume=types.ResumeInfo(resumed_from_step=10))
    assert types.RunRecord.from_json(record.to_json()) == record
    assert load_record(write_record(record, tmp_path)) == record


def _version_1(record: types.RunRecord, *, mixed_precision: str) -> dict:
    """The JSON a version-1 trainer wrote before precision was an axis."""
    data = _before_version_5(record.to_json())
    data.update(schema_version=1, env={**data["env"], "mixed_precision": mixed_precision})
    for key in ("precision", "error", "resume"):
        del data[key]
    return data


def test_a_version_1_record_loads_upgraded_with_the_precision_its_environment_names(tmp_path):
    (tmp_path / "record.json").write_text(json.dumps(_version_1(minimal_record(), mixed_precision="bf16")))
    record = load_record(tmp_path)
    assert record.schema_version == types.SCHEMA_VERSION == 5
    assert record.precision == types.Precision(value="bf16", source="auto", requested="auto", accelerate_launch=None)
    assert record.error is None and record.resume is None
    assert record.curves == minimal_record().curves


def test_a_version_2_record_from_before_the_train_pool_draws_from_the_default_manifest(tmp_path):
    data = minimal_record().to_json()
    data["schema_version"] = 2
    del data["config"]["data"]["train_pool"]
    (tmp_path / "record.json").write_text(json.dumps(data))
    record = load_record(tmp_path)
    assert record.schema_version == types.SCHEMA_VERSION and record.config.data.train_pool == DEFAULT_TRAIN_POOL
    assert record.curves == minimal_record().curves


def _version_3(record: types.RunRecord) -> dict:
    """The JSON a version-3 trainer wrote: the final clean train loss under final_metrics.train_loss."""
    data = _before_version_5(record.to_json()) | {"schema_version": 3}
    data["final_metrics"] = _renamed(data["final_metrics"], "clean_train_loss", "train_loss")
    return data


def _before_version_5(data: dict) -> dict:
    """`data` as a trainer wrote it before datasets other than AG News: no dataset keys, no label names."""
    data = {**data, "data": {k: v for k, v in data["data"].items() if k != "label_names"}}
    data["config"] = {**data["config"], "data": {k: v for k, v in data["config"]["data"].items()
                                                 if k not in DATASET_DEFAULTS}}
    return data


def _upgraded_to_5(data: dict) -> dict:
    """What the upgrade adds at version 5, in the place the writer puts it (AG News and its label names)."""
    data = {**data, "schema_version": 5}
    data["config"] = {**data["config"], "data": {**data["config"]["data"], **DATASET_DEFAULTS}}
    data["data"] = {"source": data["data"]["source"], "label_names": list(AG_NEWS_LABELS),
                    **{k: v for k, v in data["data"].items() if k != "source"}}
    return data


def test_a_version_4_record_loads_as_ag_news_with_its_label_names(tmp_path):
    original = minimal_record()
    data = _before_version_5(original.to_json()) | {"schema_version": 4}
    (tmp_path / "record.json").write_text(json.dumps(data))
    record = load_record(tmp_path)
    assert record == original and record.data.label_names == list(AG_NEWS_LABELS)
    assert record.config.data.dataset == "ag_news" and record.to_json() == _upgraded_to_5(data)


def _renamed(node: dict, old: str, new: str) -> dict:
    """`node` with key `old` renamed to `new` in its place (key order is what the writer's bytes follow)."""
    return {(new if key == old else key): value for key, value in node.items()}


def test_a_version_3_record_loads_with_its_final_train_loss_as_the_clean_train_loss(tmp_path):
    original = minimal_record()
    data = _version_3(original)
    assert "clean_train_loss" not in data["final_metrics"]
    (tmp_path / "record.json").write_text(json.dumps(data))
    record = load_record(tmp_path)
    assert record.schema_version == types.SCHEMA_VERSION == 5
    assert record.final_metrics.clean_train_loss == data["final_metrics"]["train_loss"] == 0.9
    assert record == original  # the curves keep train_loss: that one is the optimisation loss as trained


def test_a_version_1_record_from_before_the_fingerprint_and_precision_axis_gets_none_and_the_precision_that_ran(
        tmp_path):
    data = _version_1(minimal_record(), mixed_precision="no")
    data["env"] = {k: v for k, v in data["env"].items() if k not in (*ADDED_AFTER_VERSION_1, "precision")}
    del data["config"]["train"]["precision"], data["config"]["model"]["ngram_buckets"]
    (tmp_path / "record.json").write_text(json.dumps(data))
    record = load_record(tmp_path)
    assert all(getattr(record.env, name) is None for name in ADDED_AFTER_VERSION_1)  # not recorded, not guessed
    assert record.env.precision == record.config.train.precision == record.precision.value == "fp32"
    assert record.config.model.ngram_buckets == config_types.ModelConfig().ngram_buckets  # added with its default


@pytest.mark.parametrize(("part", "key"), [("env", "cpu_count"), ("env", "git_commit"), ("config", "device")])
def test_a_version_2_record_missing_an_env_or_config_key_is_refused_in_one_line_naming_it(tmp_path, part, key):
    data = minimal_record().to_json()
    del data[part][key]
    (tmp_path / "record.json").write_text(json.dumps(data))
    with pytest.raises(ChimeraError, match=f"/{part}: '{key}' is a required property") as caught:
        load_record(tmp_path)
    assert "\n" not in str(caught.value)


def test_a_version_2_record_missing_a_config_key_is_refused_by_the_class_too_never_defaulted():
    data = minimal_record().to_json()
    del data["config"]["train"]["lr"]
    with pytest.raises(ChimeraError, match="record.config: missing key 'train.lr'"):
        types.RunRecord.from_json(data)
    del data["env"]["ram_gib"]
    with pytest.raises(ValueError, match="record env: missing key 'ram_gib'"):
        RunEnv.from_json(data["env"])


@pytest.mark.parametrize("part", ["env", "config", "config/train"])
def test_a_version_2_record_with_an_unknown_env_or_config_key_is_refused(tmp_path, part):
    data = minimal_record().to_json()
    node = data
    for name in part.split("/"):
        node = node[name]
    node["mixed_precisionn"] = "no"
    (tmp_path / "record.json").write_text(json.dumps(data))
    with pytest.raises(ChimeraError, match="Additional properties are not allowed"):
        load_record(tmp_path)


def test_every_committed_record_is_version_3_or_later_with_a_commit():
    assert types.SCHEMA_VERSION == 5 and not COMMITTED_V1, [str(p.relative_to(REPO)) for p in COMMITTED_V1]
    assert len(COMMITTED_V3) + len(COMMITTED_V4) + len(COMMITTED_V5) == len(COMMITTED)  # a new version: a new test
    assert all(load_record(path).env.git_commit for path in COMMITTED)


@pytest.mark.parametrize("path", COMMITTED_V4 + COMMITTED_V5, ids=lambda p: str(p.parent.relative_to(REPO)))
def test_the_committed_version_4_and_5_records_are_rewritten_changing_only_what_version_5_adds(path, tmp_path):
    raw = json.loads(path.read_text())
    record = load_record(path)
    assert record.env.git_commit and record.env.git_dirty is False and record.config.train.step_mode == "eager"
    expected = path.read_text() if raw["schema_version"] == 5 else json.dumps(_upgraded_to_5(raw), indent=1) + "\n"
    written = write_record(record, tmp_path / "again")
    assert written.read_text() == expected  # every other byte as committed
    assert write_record(load_record(written), tmp_path / "twice").read_bytes() == written.read_bytes()


@pytest.mark.parametrize("path", COMMITTED_V3, ids=lambda p: str(p.parent.relative_to(REPO)))
def test_the_committed_version_3_records_load_and_are_rewritten_changing_only_the_version_and_two_keys(
        path, tmp_path):
    text = path.read_text()
    record = load_record(path)
    assert record.env.git_commit and record.env.cpu_flags is not None
    assert "@sha256:" in record.config.data.train_pool  # the pool a rerun from the hub must rebuild
    expected = text.replace('\n "schema_version": 3,\n', '\n "schema_version": 4,\n', 1).replace(
        '\n "final_metrics": {\n  "train_loss": ', '\n "final_metrics": {\n  "clean_train_loss": ', 1)
    # ... and the step mode every earlier run stepped in, after config.train's last key (its precision)
    expected = re.sub(r'(\n   "precision": "\w+")(\n  },\n  "evaluation")', r'\1,\n   "step_mode": "eager"\2', expected,
                      count=1)
    assert expected.count('"clean_train_loss": ') == text.count('"clean_train_loss": ') + 1
    expected = json.dumps(_upgraded_to_5(json.loads(expected)), indent=1) + "\n"  # ... and what version 5 adds
    written = write_record(record, tmp_path / "now")
    assert written.read_text() == expected  # every other byte as committed
    again = write_record(load_record(written), tmp_path / "again")
    assert again.read_bytes() == written.read_bytes()  # a record written now round-trips exactly


def test_a_record_of_an_unknown_version_is_refused_in_one_line(tmp_path):
    data = minimal_record().to_json() | {"schema_version": 99}
    (tmp_path / "record.json").write_text(json.dumps(data))
    with pytest.raises(ChimeraError, match="schema_version"):
        load_record(tmp_path)


RECORD_KEYS = {"schema_version", "run_id", "cell", "status", "world_size", "final_metrics", "curves", "timing",
               "events", "params", "data", "env", "time_to_target", "resume"}
# Token statistics and parameter counts are left out: data/ and model/ report their own measurements as
# mappings (they import nothing from records/), and the trainer types them (TokenStats, ParamCounts).
PIECES = [{"step", "kind"}, {"step", "val_loss", "lr"}, {"step", "step_time_s"}, {"metric", "target", "reached"},
          {"val_loss", "val_acc", "test_acc"}, {"value", "source", "requested"}, {"resumed_from_step"},
          {"resumable_from_step"}, {"fingerprints", "tokenizer_sha256"}]


def test_no_module_outside_records_builds_a_record_as_a_hand_made_dict():
    """A dict literal shaped like a record or one of its parts (a curve point, an event, final metrics...)."""
    offenders = []
    for path in sorted((REPO / "chimera").rglob("*.py")):
        if path.parent.name == "records":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Dict) or all(isinstance(v, ast.Name) for v in node.values):
                continue  # a table of names (e.g. the checkpoint's list name -> record class) builds nothing
            keys = {k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
            if len(keys & RECORD_KEYS) >= 3 or any(piece <= keys for piece in PIECES):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not offenders, f"record pieces built as dicts: {offenders}"
