"""The shipped matrix loads, resolves every (cell, profile), and encodes the documented setups."""

import pytest

from chimera.errors import ChimeraError
from chimera.matrix import load_matrix

CELLS = {"baseline/dense", "baseline/moe", "fixed/dense", "fixed/moe", "reference/bow"}


def test_every_shipped_cell_and_profile_resolves():
    matrix = load_matrix()
    assert set(matrix.cells) == CELLS
    assert {"ci", "full"} <= set(matrix.profiles)
    for cell in CELLS:
        for profile in matrix.profiles:
            assert matrix.resolve(cell, profile).cell == cell


def test_full_profile_is_the_original_story():
    matrix = load_matrix()
    base = matrix.resolve("baseline/dense", "full")
    assert (base.model.n_layers, base.model.d_model, base.model.n_heads, base.model.d_ff) == (4, 256, 4, 1024)
    assert (base.model.dropout, base.train.weight_decay, base.train.lr) == (0.1, 0.01, 3e-4)
    assert (base.train.max_steps, base.train.early_stopping, base.data.train_samples) == (5000, False, 2048)
    fixed = matrix.resolve("fixed/dense", "full")
    assert (fixed.model.n_layers, fixed.model.d_model, fixed.model.d_ff, fixed.model.dropout) == (2, 128, 512, 0.4)
    assert (fixed.train.weight_decay, fixed.train.lr, fixed.train.label_smoothing) == (0.1, 1e-4, 0.1)
    assert fixed.train.early_stopping and fixed.train.eval_every == 20 and fixed.train.patience == 5
    assert fixed.train.min_delta == 0.001 and fixed.train.warmup_steps > 0 and fixed.train.schedule != "constant"
    assert fixed.augment.enabled and (fixed.augment.word_dropout, fixed.augment.word_shuffle) == (0.1, 0.15)


def test_moe_cells_keep_the_dims_of_their_dense_twins():
    matrix = load_matrix()
    for setup in ("baseline", "fixed"):
        dense, moe = matrix.resolve(f"{setup}/dense", "ci"), matrix.resolve(f"{setup}/moe", "ci")
        assert moe.model.ffn == "moe" and dense.model.ffn == "dense"
        for key in ("d_model", "n_layers", "n_heads", "d_ff", "dropout"):
            assert getattr(moe.model, key) == getattr(dense.model, key)
        assert moe.train == dense.train and moe.data == dense.data and moe.augment == dense.augment


@pytest.mark.parametrize("text, fragment", [
    ('[cells."a/b"]\nmodel = { d_modle = 3 }\n[profiles.p]\n', "unknown key 'd_modle'"),
    ('[cells."a/b"]\nmodel = { d_model = "big" }\n[profiles.p]\n', "d_model must be int"),
    ('[cells."a/b"]\nmodle = { d_model = 3 }\n[profiles.p]\n', "unknown key 'modle'"),
    ('[cells."a/b"]\n[profiles.p]\n[[profiles.p.override]]\ntrain = { lr = 1 }\n', "needs cells"),
    ('[cells."a/b"\n', "not valid TOML"),
    ('[profiles.p]\n', "at least one"),
])
def test_bad_matrix_files_fail_on_load_naming_the_key(tmp_path, text, fragment):
    path = tmp_path / "m.toml"
    path.write_text(text)
    with pytest.raises(ChimeraError, match=fragment):
        load_matrix(path)


def test_unknown_cell_or_profile():
    matrix = load_matrix()
    with pytest.raises(ChimeraError, match="unknown cell"):
        matrix.resolve("fixed/sparse", "ci")
    with pytest.raises(ChimeraError, match="unknown profile"):
        matrix.resolve("fixed/dense", "nightly")


def test_every_profile_times_the_same_target_qualities_and_the_reference_shares_the_fixed_rows():
    matrix = load_matrix()
    for profile in ("ci", "full"):
        for cell in CELLS:
            assert matrix.resolve(cell, profile).evaluation.target_val_acc == (0.70, 0.75, 0.80)
        fixed, reference = matrix.resolve("fixed/dense", profile), matrix.resolve("reference/bow", profile)
        assert reference.model.arch == "bag_of_ngrams" and fixed.model.arch == "transformer"
        assert reference.data == fixed.data  # same rows: the doctor and report compare them
    # full: clean train loss every 100 steps in every cell
    for cell in ("baseline/dense", "fixed/dense"):
        config = matrix.resolve(cell, "full")
        assert config.train.eval_every * config.evaluation.clean_train_every == 100
