"""Ablation variants are generated from two cells' differences: each differs from its start in exactly one
change, keeps its start's scale, has a stable name, and its record resolves to the configuration it claims."""

from __future__ import annotations

import dataclasses
import fnmatch

import pytest

from chimera.ablation import (
    ADD_IN,
    CHANGE_NAMES,
    CHANGES,
    LEAVE_OUT,
    SCALE_KEYS,
    _flat,
    ablation_variants,
    differing_changes,
    parse_variant_name,
    variant_name,
)
from chimera.config import RunConfig
from chimera.errors import ChimeraError
from chimera.matrix import load_matrix
from chimera.records.store import load_record
from tests.helpers import TINY, quiet_env, run_chimera, sets, write_synthetic_ag_news

# The published names (README, records, reports): renaming one orphans every record made with it.
NINE = ["width", "depth", "ff-width", "dropout", "weight-decay", "lr", "label-smoothing", "schedule", "augmentation"]


def _group_of(key: str) -> str:
    owners = [change.name for change in CHANGES if change.covers(key)]
    assert len(owners) <= 1, f"{key} belongs to {owners}"
    return owners[0] if owners else "scale" if any(fnmatch.fnmatchcase(key, p) for p in SCALE_KEYS) else "other"


def _diff(a: RunConfig, b: RunConfig) -> set[str]:
    fa, fb = _flat(a), _flat(b)
    return {key for key in fa if fa[key] != fb[key]}


@pytest.mark.parametrize("profile", ["ci", "full"])
def test_names_are_stable_and_every_change_of_the_fix_gets_both_variants(profile):
    family = load_matrix().ablation("fixed/dense", profile)
    assert list(CHANGE_NAMES) == NINE
    assert [c.cell for c in family] == (["fixed/dense", "baseline/dense"]
                                        + [f"fixed/dense-without-{n}" for n in NINE]
                                        + [f"baseline/dense-with-{n}" for n in NINE])


@pytest.mark.parametrize("base", ["fixed/dense", "fixed/moe"])
@pytest.mark.parametrize("profile", ["ci", "full"])
def test_each_variant_differs_from_its_start_in_exactly_one_change_and_matches_the_other_end_there(base, profile):
    matrix = load_matrix()
    fixed, baseline, *variants = matrix.ablation(base, profile, seed=3)
    for variant in variants:
        parsed = parse_variant_name(variant.cell)
        start, other = (fixed, baseline) if parsed.direction == LEAVE_OUT else (baseline, fixed)
        moved = _diff(variant, start)
        assert moved and {_group_of(key) for key in moved} == {parsed.change}, (variant.cell, moved)
        theirs, ours = _flat(other), _flat(variant)
        assert all(ours[key] == theirs[key] for key in moved)
        # everything else, scale included, is the start's; and so are seed, profile and device
        assert (variant.seed, variant.profile, variant.device) == (3, profile, "auto")


def test_scale_stays_with_each_end_and_is_never_a_change():
    matrix = load_matrix()
    fixed, baseline, *variants = matrix.ablation("fixed/dense", "ci")
    assert fixed.data != baseline.data  # the ci profile scales the two ends differently ...
    for variant in variants:
        start = fixed if parse_variant_name(variant.cell).direction == LEAVE_OUT else baseline
        assert variant.data == start.data and variant.train.max_steps == start.train.max_steps  # ... and keeps it


def test_a_difference_no_change_covers_is_refused():
    matrix = load_matrix()
    fixed = matrix.resolve("fixed/dense", "ci")
    odd = dataclasses.replace(fixed, cell="odd/cell", model=dataclasses.replace(fixed.model, n_heads=8))
    with pytest.raises(ChimeraError, match="model.n_heads"):
        differing_changes(fixed, odd)


def test_equal_cells_have_no_variants_and_one_change_gives_one_pair():
    fixed = load_matrix().resolve("fixed/dense", "ci")
    assert ablation_variants(fixed, fixed) == []
    other = dataclasses.replace(fixed, cell="x/y", model=dataclasses.replace(fixed.model, dropout=0.0))
    assert [v.cell for v in ablation_variants(fixed, other)] == ["fixed/dense-without-dropout", "x/y-with-dropout"]


def test_parse_and_make_names_round_trip_and_refuse_what_the_scheme_did_not_make():
    for start in ("fixed/dense", "baseline/moe", "a-with-b/c"):
        for direction in (LEAVE_OUT, ADD_IN):
            for change in CHANGE_NAMES:
                parsed = parse_variant_name(variant_name(start, direction, change))
                assert (parsed.start, parsed.direction, parsed.change) == (start, direction, change)
    for name in ("fixed/dense", "fixed/dense-without-colour", "fixed/dense-with-", "-with-dropout"):
        assert parse_variant_name(name) is None


def test_variants_resolve_by_name_with_overrides_last_and_unknown_ones_are_one_line():
    matrix = load_matrix()
    family = {c.cell: c for c in matrix.ablation("fixed/dense", "ci", seed=1)}
    for name, config in family.items():
        assert matrix.resolve(name, "ci", seed=1) == config
    tuned = matrix.resolve("baseline/dense-with-dropout", "ci", overrides=["model.dropout=0.25"])
    assert tuned.model.dropout == 0.25  # --set still wins, as for any cell
    with pytest.raises(ChimeraError, match="unknown cell"):
        matrix.resolve("reference/bow-with-dropout", "ci")
    with pytest.raises(ChimeraError, match="no ablation of"):
        matrix.ablation("reference/bow", "ci")


@pytest.mark.parametrize("text, fragment", [
    ('against = "nope/cell"\n', "'nope/cell' is not a cell"),
    ('agianst = "a/c"\n', "unknown key 'agianst'"),
])
def test_bad_ablation_tables_fail_on_load(tmp_path, text, fragment):
    path = tmp_path / "m.toml"
    path.write_text('[cells."a/b"]\nmodel = { dropout = 0.3 }\n[cells."a/c"]\n[profiles.p]\n[ablations."a/b"]\n' + text)
    with pytest.raises(ChimeraError, match=fragment):
        load_matrix(path)


@pytest.mark.slow  # one tiny variant trains in a subprocess (~10 s)
def test_a_variant_trains_and_its_record_resolves_to_the_configuration_it_claims(tmp_path):
    data = write_synthetic_ag_news(tmp_path / "data", n_train=400, n_test=64)
    run_chimera("matrix", "--profile", "ci", "--ablation", "fixed/dense", "--cells", "baseline/dense-with-dropout",
                "--seeds", "4", "--data-dir", str(data), "--out", str(tmp_path / "runs"), "--quiet",
                "--cache-dir", str(tmp_path / "cache"), *sets(*TINY), env=quiet_env())
    (record_path,) = (tmp_path / "runs").glob("*/record.json")
    assert record_path.parent.name == "baseline-dense-with-dropout-ci-s4"
    record = load_record(record_path)
    ran = [f"train.precision={record.config.train.precision}",  # the record keeps what each `auto` chose
           f"train.step_mode={record.config.train.step_mode}"]
    claimed = load_matrix().resolve(record.cell, record.profile, seed=record.seed, overrides=[*TINY, *ran])
    assert record.config == claimed
    assert claimed.model.dropout == load_matrix().resolve("fixed/dense", "ci").model.dropout
    assert record.status in ("completed", "stopped_early")
