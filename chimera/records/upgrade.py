"""Records written by an earlier schema version, brought up to the current one before they are checked.

One function per version step, so a record from last year still loads: `chimera.records.store.load_record`
upgrades, then validates against record.schema.json, then types. A version with no step here (a newer
one, or garbage) is left as it is, and the schema names the problem in one line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chimera.config import (
    AG_NEWS_LABELS,
    DATASET_DEFAULTS,
    DEFAULT_TRAIN_POOL,
    SECTIONS,
    precision_from_accelerate,
    with_defaults,
)
from chimera.records.env import ADDED_AFTER_VERSION_1


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Version 2 always names the precision the run trained in, and always carries `error` and `resume`
    (null when none). Version 1 records made before precision was an axis lack it: the device policy
    chose alone (auto), and said so only as env.mixed_precision. Version 2 also closes the set of event
    kinds and types token_stats, which the trainer already wrote that way under version 1.

    Version 2 types `env` and `config` with every key required. The hardware fingerprint and
    cpu_bf16_supported came after some version-1 records: None there means not recorded; env.precision is
    the precision block's value. A config key added after the record was written gets its default (the
    behaviour before the key existed), except train.precision, which is the precision that ran."""
    data = {"error": None, "resume": None, **data, "schema_version": 2}
    env = data.get("env")
    if not data.get("precision"):
        mixed = env.get("mixed_precision") if isinstance(env, dict) else None
        data["precision"] = {"value": precision_from_accelerate(mixed), "source": "auto", "requested": "auto",
                             "accelerate_launch": None}
    ran = data["precision"].get("value") if isinstance(data["precision"], dict) else None
    if isinstance(env, dict):
        data["env"] = {**dict.fromkeys(ADDED_AFTER_VERSION_1), "precision": ran, **env}
    config = data.get("config")
    if isinstance(config, dict) and all(isinstance(config.get(name, {}), dict) for name in SECTIONS):
        data["config"] = with_defaults({**config, "train": {"precision": ran, **config.get("train", {})}})
    return data


def _v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
    """Version 3 names the train pool (config.data.train_pool). Every earlier record drew from the rows the
    default manifest lists (the offline subset), so that is what it gets."""
    data = {**data, "schema_version": 3}
    config = data.get("config")
    if isinstance(config, dict) and isinstance(config.get("data"), dict):
        data["config"] = {**config, "data": {"train_pool": DEFAULT_TRAIN_POOL, **config["data"]}}
    return data


def _v3_to_v4(data: dict[str, Any]) -> dict[str, Any]:
    """Version 4 names the final clean train loss (eval mode, no smoothing, no augmentation) what it is:
    final_metrics.clean_train_loss, written as final_metrics.train_loss before. The value, and its place
    among the keys, stay as they were; curve points keep train_loss, the optimisation loss as trained.
    It also names the step mode (config.train.step_mode): every earlier run stepped eagerly."""
    data = {**data, "schema_version": 4}
    config = data.get("config")
    if isinstance(config, dict) and isinstance(config.get("train"), dict) and "step_mode" not in config["train"]:
        data["config"] = {**config, "train": {**config["train"], "step_mode": "eager"}}
    final = data.get("final_metrics")
    if isinstance(final, dict) and "train_loss" in final and "clean_train_loss" not in final:
        data["final_metrics"] = {("clean_train_loss" if k == "train_loss" else k): v for k, v in final.items()}
    return data


def _v4_to_v5(data: dict[str, Any]) -> dict[str, Any]:
    """Version 5 names the dataset (config.data.dataset, its columns and splits) and the label names
    (data.label_names). Every earlier record trained on AG News, read by its default columns and splits."""
    data = {**data, "schema_version": 5}
    config = data.get("config")
    if isinstance(config, dict) and isinstance(config.get("data"), dict):
        data["config"] = {**config, "data": {**config["data"], **{k: v for k, v in DATASET_DEFAULTS.items()
                                                                if k not in config["data"]}}}
    info = data.get("data")
    if isinstance(info, dict) and "label_names" not in info:
        data["data"] = {"source": info.get("source"), "label_names": list(AG_NEWS_LABELS),
                        **{k: v for k, v in info.items() if k != "source"}}
    return data


UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {  # version -> the step to the next one
    1: _v1_to_v2, 2: _v2_to_v3, 3: _v3_to_v4, 4: _v4_to_v5}


def upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """A record's JSON object brought to the current SCHEMA_VERSION, one version at a time."""
    while isinstance(data.get("schema_version"), int) and data["schema_version"] in UPGRADES:
        data = UPGRADES[data["schema_version"]](data)
    return data
