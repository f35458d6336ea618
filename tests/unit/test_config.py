"""Config validation and `--set` overrides: every bad value names its key."""

import dataclasses
import re

import pytest

from chimera.config import (
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    parse_assignment,
)
from chimera.errors import ChimeraError


def base() -> RunConfig:
    return RunConfig(cell="fixed/dense", profile="ci")


@pytest.mark.parametrize("assignment, key", [
    ("model.dropout=1.0", "model.dropout"),
    ("model.dropout=-0.1", "model.dropout"),
    ("train.lr=0", "train.lr"),
    ("train.lr=-1e-4", "train.lr"),
    ("train.patience=0", "train.patience"),
    ("train.schedule=triangle", "train.schedule"),
    ("model.n_heads=3", "model.d_model"),
    ("model.top_k=5", "model.top_k"),
    ("data.max_length=2", "data.max_length"),
    ("evaluation.target_val_acc=[0.7, 1.5]", "evaluation.target_val_acc"),
    ("evaluation.target_val_acc=[0.7, 0.7]", "evaluation.target_val_acc"),
    ("evaluation.target_val_loss=[0]", "evaluation.target_val_loss"),
    ("evaluation.clean_train_every=0", "evaluation.clean_train_every"),
    ("model.arch=rnn", "model.arch"),
])
def test_out_of_range_values_name_their_key(assignment, key):
    with pytest.raises(ChimeraError, match=key.replace(".", r"\.")):
        apply_overrides(base(), [assignment])


@pytest.mark.parametrize("assignment, fragment", [
    ("train.lrr=1e-4", "unknown key 'lrr'"),
    ("optim.lr=1e-4", "unknown section 'optim'"),
    ("train.lr=fast", "lr must be float"),
    ("train.max_steps=1.5", "max_steps must be int"),
    ("train.early_stopping=1", "early_stopping must be bool"),
    ("evaluation.target_val_acc=0.7", "target_val_acc must be tuple"),
    ("evaluation.target_val_acc=['high']", "target_val_acc must be tuple"),
    ("train.lr", "expected section.key=value"),
    ("lr=1", "expected section.key=value"),
    ("train.lr=__import__('os').system('true')", "not a literal"),
    ("train.lr=(lambda: 1)()", "not a literal"),
])
def test_bad_overrides_are_rejected_with_a_one_line_message(assignment, fragment):
    with pytest.raises(ChimeraError, match=fragment.replace("(", r"\(").replace(")", r"\)")) as info:
        apply_overrides(base(), [assignment])
    assert "\n" not in str(info.value)


def test_overrides_apply_with_types_coerced():
    config = apply_overrides(base(), ["train.lr=2e-4", "train.schedule=linear", "train.weight_decay=0",
                                      "model.capacity_factor_train=1.25", "train.betas=[0.9, 0.95]"])
    assert config.train.lr == 2e-4 and config.train.schedule == "linear"
    assert isinstance(config.train.weight_decay, float)
    assert config.model.capacity_factor_train == 1.25
    assert config.train.betas == (0.9, 0.95)


@pytest.mark.parametrize("assignment, value", [
    ("train.schedule=cosine", "cosine"),
    ("train.precision=bf16", "bf16"),
    ("data.train_pool=all", "all"),
    ("data.train_pool=manifest:ag_news-train-subset", "manifest:ag_news-train-subset"),  # not a Python literal
    ("data.train_pool=manifest:ag_news-train-subset@sha256:" + "0" * 64, "manifest:ag_news-train-subset@sha256:"
     + "0" * 64),
    ("train.precision='bf16'", "bf16"),  # quoted as before: still the string
    ('train.step_mode="eager"', "eager"),
    ("train.step_mode= eager ", "eager"),
])
def test_a_string_field_takes_the_text_as_typed_quoted_or_not(assignment, value):
    section, key, parsed = parse_assignment(assignment)
    assert parsed == value
    assert getattr(getattr(apply_overrides(base(), [assignment]), section), key) == value


@pytest.mark.parametrize("assignment, fragment", [
    ("train.precision=None", "train.precision must be one of"),  # the word None, for a str field: refused by value
    ("train.schedule=16", "train.schedule must be one of"),
    ("data.train_pool=manifest:Bad Name", "data.train_pool must be 'all' or 'manifest:NAME'"),
    ("train.max_steps=ten", "max_steps must be int, got 'ten'"),  # other fields still parse literals
    ("train.lr='2e-4'", "lr must be float, got '2e-4'"),
    ("train.betas=0.9", "betas must be tuple"),
])
def test_the_field_type_decides_and_a_wrong_value_fails_in_one_line(assignment, fragment):
    with pytest.raises(ChimeraError, match=re.escape(fragment)) as info:
        apply_overrides(base(), [assignment])
    assert "\n" not in str(info.value)


def test_parse_assignment_never_evaluates_code():
    assert parse_assignment("train.schedule=cosine") == ("train", "schedule", "cosine")
    assert parse_assignment("model.capacity_factor_eval=None") == ("model", "capacity_factor_eval", None)


def test_config_round_trips_through_plain_data():
    config = apply_overrides(base(), ["train.betas=(0.8, 0.9)"])
    assert config_from_dict(config_to_dict(config)) == config


def test_dataclasses_are_frozen_and_keyword_only():
    with pytest.raises(TypeError):
        TrainConfig(32)  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        DataConfig().max_length = 10  # type: ignore[misc]
    assert ModelConfig().ffn == "dense"


def test_overrides_of_one_section_are_validated_together():
    config = apply_overrides(base(), ["train.max_steps=4", "train.warmup_steps=1"])
    assert (config.train.max_steps, config.train.warmup_steps) == (4, 1)


def test_targets_are_any_number_of_floats_listed_easiest_first():
    config = apply_overrides(base(), ["evaluation.target_val_acc=[0.8, 0.7]", "evaluation.target_val_loss=[0.5, 1]"])
    assert config.evaluation.target_val_acc == (0.8, 0.7)
    assert all(isinstance(v, float) for v in config.evaluation.target_val_loss)
    assert config.evaluation.targets() == [("val_acc", 0.7), ("val_acc", 0.8), ("val_loss", 1.0), ("val_loss", 0.5)]
    assert apply_overrides(base(), ["evaluation.target_val_acc=[]"]).evaluation.targets() == []
