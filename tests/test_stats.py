"""Statistics of the experiment tables, checked against independent references."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps

from diffcl_lite.errors import DiffCLError
from diffcl_lite.stats import format_mean_sd, holm, mean_sd, paired_bootstrap, paired_ttest, significance_mark


def test_mean_sd_matches_numpy_sample_sd():
    x = [0.21, 0.25, 0.19]
    m, s = mean_sd(x)
    assert m == pytest.approx(np.mean(x))
    assert s == pytest.approx(np.std(x, ddof=1))
    assert mean_sd([0.3]) == (0.3, 0.0)
    assert format_mean_sd([0.1, 0.3]) == "0.2000 ± 0.1414"
    with pytest.raises(DiffCLError):
        mean_sd([])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_paired_ttest_matches_scipy_ttest_rel(seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(0.25, 0.01, size=5)
    b = a - rng.normal(0.004, 0.006, size=5)
    res = paired_ttest(a, b)
    ref = sps.ttest_rel(a, b)
    assert res.statistic == pytest.approx(ref.statistic)
    assert res.p_value == pytest.approx(ref.pvalue)
    assert res.mean_diff == pytest.approx(np.mean(a - b))
    ci = ref.confidence_interval(0.95)
    assert (res.ci_low, res.ci_high) == pytest.approx((ci.low, ci.high))


def test_paired_ttest_degenerate_and_bad_input():
    same = paired_ttest([0.2, 0.3, 0.4], [0.2, 0.3, 0.4])
    assert same.p_value == 1.0 and same.mean_diff == 0.0
    shifted = paired_ttest([0.3, 0.4, 0.5], [0.2, 0.3, 0.4])
    assert shifted.p_value == 0.0 and shifted.statistic == math.inf
    with pytest.raises(DiffCLError, match="same length"):
        paired_ttest([1.0, 2.0], [1.0])
    with pytest.raises(DiffCLError, match="at least 2"):
        paired_ttest([1.0], [1.0])
    with pytest.raises(DiffCLError, match="NaN"):
        paired_ttest([1.0, float("nan")], [1.0, 2.0])


def test_paired_bootstrap_matches_exact_enumeration():
    # hand case: 3 users, all 3^3 = 27 resamples are equally likely
    a = np.array([0.5, 0.0, 1.0])
    b = np.array([0.4, 0.25, 0.6])
    d = a - b  # [0.1, -0.25, 0.4]: no resample sums to exactly 0
    means = np.array([d[list(idx)].mean() for idx in itertools.product(range(3), repeat=3)])
    # mean <= 0 needs three -0.25 (1 way), two -0.25 and one other (3 + 3) or one -0.25 and two 0.1 (3)
    exact_le = float((means <= 0).mean())
    exact_ge = float((means >= 0).mean())
    exact_p = min(1.0, 2 * min(exact_le, exact_ge))
    assert exact_p == pytest.approx(2 * 10 / 27)
    res = paired_bootstrap(a, b, n_boot=40_000, seed=3)
    assert res.mean_diff == pytest.approx(d.mean())
    assert res.p_value == pytest.approx(exact_p, abs=0.015)
    assert res.ci_low == pytest.approx(np.quantile(means, 0.025, method="inverted_cdf"), abs=0.01)
    assert res.ci_high == pytest.approx(np.quantile(means, 0.975, method="inverted_cdf"), abs=0.01)


def test_paired_bootstrap_detects_a_clear_shift_and_is_deterministic():
    rng = np.random.default_rng(0)
    b = rng.random(400)
    a_up = b + 0.05 + 0.01 * rng.standard_normal(400)
    up = paired_bootstrap(a_up, b, n_boot=2_000, seed=1)
    assert up.p_value < 0.001 and up.ci_low > 0
    null = paired_bootstrap(b + 0.01 * rng.standard_normal(400), b, n_boot=2_000, seed=1)
    assert null.p_value > 0.01
    again = paired_bootstrap(a_up, b, n_boot=2_000, seed=1)
    assert again == up
    with pytest.raises(DiffCLError, match="n_boot"):
        paired_bootstrap(a_up, b, n_boot=10)


def test_holm_hand_case():
    # p = (0.01, 0.04, 0.03, nan): sorted 0.01*3, 0.03*2, 0.04*1 -> 0.03, 0.06, 0.06 (monotone)
    adj = holm([0.01, 0.04, 0.03, float("nan")])
    assert adj[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert math.isnan(adj[3])
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])
    assert significance_mark(0.01, 0.02) == "↑"
    assert significance_mark(0.01, -0.02) == "↓"
    assert significance_mark(0.2, 0.02) == "–"
    assert significance_mark(float("nan"), 0.02) == "–"
