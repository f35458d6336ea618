"""Records written by an earlier schema version, brought up to the current one before they are checked.

One function per version step, so a record from last year still loads: `chimera.records.store.load_record`
upgrades, then validates against record.schema.json, then types. A version with no step here (a newer
one, or garbage) is left as it is, and the schema names the problem in one line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chimera.config import precision_from_accelerate


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Version 2 always names the precision the run trained in, and always carries `error` and `resume`
    (null when none). Version 1 records made before precision was an axis lack it: the device policy
    chose alone (auto), and said so only as env.mixed_precision. Version 2 also closes the set of event
    kinds and types token_stats, which the trainer already wrote that way under version 1."""
    data = {"error": None, "resume": None, **data, "schema_version": 2}
    if not data.get("precision"):
        mixed = (data.get("env") or {}).get("mixed_precision")
        data["precision"] = {"value": precision_from_accelerate(mixed), "source": "auto", "requested": "auto",
                             "accelerate_launch": None}
    return data


UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _v1_to_v2}  # version -> the next one


def upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """A record's JSON object brought to the current SCHEMA_VERSION, one version at a time."""
    while isinstance(data.get("schema_version"), int) and data["schema_version"] in UPGRADES:
        data = UPGRADES[data["schema_version"]](data)
    return data
