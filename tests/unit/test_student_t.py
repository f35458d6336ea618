"""The stdlib Student's t matches published tables, so the ablation's significance test is the textbook one."""

from __future__ import annotations

import math

import pytest

from chimera.analysis.student_t import ci_half_width, regularised_incomplete_beta, t_cdf, t_quantile

# Two-sided 95% critical values t_{0.975, df} from any statistics table (e.g. NIST/SEMATECH e-Handbook 1.3.6.7.2).
TABLE_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 9: 2.262, 10: 2.228, 20: 2.086, 30: 2.042,
             100: 1.984}


@pytest.mark.parametrize(("df", "expected"), sorted(TABLE_975.items()))
def test_two_sided_95_percent_quantiles_match_the_table(df, expected):
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=5e-4)


def test_other_levels_and_the_normal_limit():
    assert t_quantile(0.995, 2) == pytest.approx(9.925, abs=5e-4)
    assert t_quantile(0.95, 4) == pytest.approx(2.132, abs=5e-4)
    assert t_quantile(0.975, 1e6) == pytest.approx(1.960, abs=5e-4)  # the normal's 1.95996
    assert t_quantile(0.025, 4) == pytest.approx(-t_quantile(0.975, 4))


def test_cdf_has_closed_forms_at_one_and_two_degrees_of_freedom():
    for t in (-3.0, -0.5, 0.0, 0.7, 4.0):
        assert t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)  # Cauchy
        assert t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-12)


def test_incomplete_beta_edges_and_symmetry():
    assert regularised_incomplete_beta(0.0, 2, 3) == 0.0 and regularised_incomplete_beta(1.0, 2, 3) == 1.0
    assert regularised_incomplete_beta(0.3, 2, 5) == pytest.approx(1 - regularised_incomplete_beta(0.7, 5, 2))
    with pytest.raises(ValueError):
        regularised_incomplete_beta(1.5, 1, 1)


def test_confidence_interval_of_three_values():
    # mean of 0.09, 0.10, 0.11: s = 0.01, half width 4.303 * 0.01 / sqrt(3)
    assert ci_half_width(0.01, 3) == pytest.approx(4.3027 * 0.01 / math.sqrt(3), rel=1e-4)
    with pytest.raises(ValueError):
        ci_half_width(0.01, 1)
