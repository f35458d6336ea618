import math

import pytest

from chimera.train.evaluate import EarlyStopping
from chimera.train.run_setup import lr_multiplier


def test_warmup_ramps_then_cosine_decays_to_zero():
    kw = dict(schedule="cosine", warmup_steps=4, max_steps=14)
    assert [lr_multiplier(s, **kw) for s in range(4)] == [0.2, 0.4, 0.6, 0.8]
    assert lr_multiplier(4, **kw) == 1.0
    assert lr_multiplier(9, **kw) == pytest.approx(0.5)
    assert lr_multiplier(14, **kw) == pytest.approx(0.0, abs=1e-12)


def test_linear_and_constant():
    assert lr_multiplier(5, schedule="linear", warmup_steps=0, max_steps=10) == 0.5
    assert lr_multiplier(999, schedule="constant", warmup_steps=0, max_steps=10) == 1.0


def test_early_stopping_counts_evaluations_without_min_delta_gain():
    stop = EarlyStopping(patience=2, min_delta=0.1)
    assert stop.update(1.0, 10)
    assert stop.update(0.95, 20)  # new best, but not by min_delta
    assert stop.best_step == 20 and stop.evals_without_improvement == 1
    assert not stop.update(0.99, 30)
    assert stop.should_stop
    restored = EarlyStopping.from_state_dict(stop.state_dict())
    assert restored == stop and math.isclose(restored.best_loss, 0.95)
