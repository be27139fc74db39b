"""Statistics for experiment tables: mean +- sd, paired tests, multiple-comparison correction.

Used by ``python -m diffcl_lite ablate --seeds N`` and ``python -m diffcl_lite tune``. Every row
of a table is compared with a reference row (full DiffCL) in two paired ways:

- **over seeds**: the per-seed metrics ``a_s`` and ``b_s`` of the two rows are paired by seed
  (same seed = same initialisation stream and same data) and tested with a paired t-test;
- **over test users**: the per-user metric (e.g. Recall@20 of user ``u``, averaged over seeds) is
  paired by user and the mean difference is bootstrapped over users (Efron & Tibshirani, 1993,
  ch. 16; the paired bootstrap of Koehn, 2004, for evaluation metrics).

With 3 seeds the t-test has little power; the user bootstrap measures a different uncertainty
(which users happen to be in the test split), so a table reports both. ``holm`` adjusts the
p-values of the rows of one table for multiple comparisons (Holm, 1979).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from .errors import DiffCLError


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (``ddof=1``; sd is 0.0 for a single value)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise DiffCLError("mean_sd: no values; pass at least one number.")
    # sd = sqrt(Σ (x - x̄)² / (n - 1))
    return float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else 0.0


def format_mean_sd(values: Sequence[float], digits: int = 4) -> str:
    """``"0.1234 ± 0.0056"`` (or just the value for one seed)."""
    m, s = mean_sd(values)
    return f"{m:.{digits}f}" if len(values) == 1 else f"{m:.{digits}f} ± {s:.{digits}f}"


@dataclass
class PairedTest:
    """Result of a paired comparison ``a - b``: mean difference, interval, p-value."""

    method: str
    n: int
    mean_diff: float
    ci_low: float
    ci_high: float
    p_value: float
    statistic: float = float("nan")

    def to_json(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}


def _pairs(a: Sequence[float], b: Sequence[float], what: str) -> np.ndarray:
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise DiffCLError(f"{what}: a and b must be 1-D and of the same length (paired); got shapes {x.shape} and {y.shape}.")
    if x.size < 2:
        raise DiffCLError(f"{what}: a paired test needs at least 2 pairs, got {x.size}; run more seeds (--seeds 3).")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise DiffCLError(f"{what}: the values hold NaN or inf; check the runs that produced them.")
    return x - y


def paired_ttest(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> PairedTest:
    """Two-sided paired t-test of ``mean(a - b) = 0`` with a t confidence interval.

    d_s = a_s - b_s,  t = d̄ / (s_d / sqrt(n)),  df = n - 1,  p = 2 P(T_df >= |t|).
    When every difference is equal, ``t`` is ±inf (p = 0) unless the differences are all 0
    (t undefined, p = 1).
    """
    from scipy import stats as sps

    d = _pairs(a, b, "paired_ttest")
    n = d.size
    mean = float(d.mean())
    sd = float(d.std(ddof=1))
    se = sd / math.sqrt(n)
    q = float(sps.t.ppf(0.5 + confidence / 2, n - 1))
    if float(np.ptp(d)) <= 1e-12 * max(1.0, abs(mean)):  # all differences equal (up to rounding)
        mean = float(np.round(mean, 12))
        se = 0.0
        t = 0.0 if mean == 0.0 else math.copysign(math.inf, mean)
        p = 1.0 if mean == 0.0 else 0.0
    else:
        t = mean / se
        p = float(2 * sps.t.sf(abs(t), n - 1))
    return PairedTest("paired t-test over seeds", n, mean, mean - q * se, mean + q * se, p, t)


def paired_bootstrap(a: Sequence[float], b: Sequence[float], n_boot: int = 10_000, seed: int = 0,
                     confidence: float = 0.95, chunk: int = 1_000) -> PairedTest:
    """Paired bootstrap over units (test users) of the mean difference ``mean(a - b)``.

    d_u = a_u - b_u; resample the n users with replacement ``n_boot`` times, d̄*_j = mean of the
    resampled d; CI = percentiles of d̄*; two-sided p = min(1, 2 min(P*(d̄* <= 0), P*(d̄* >= 0)))
    (the share of resamples on the other side of zero, doubled). Deterministic for a ``seed``.
    """
    d = _pairs(a, b, "paired_bootstrap")
    if n_boot < 100:
        raise DiffCLError(f"paired_bootstrap: n_boot={n_boot} is too small; use at least 100 (default 10,000).")
    rng = np.random.default_rng(seed)
    n = d.size
    means = np.empty(n_boot, dtype=np.float64)
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(m, n))
        means[start : start + m] = d[idx].mean(axis=1)
    alpha = 1 - confidence
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    p = min(1.0, 2 * min(float((means <= 0).mean()), float((means >= 0).mean())))
    return PairedTest("paired bootstrap over test users", n, float(d.mean()), float(lo), float(hi), p)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (same order as given; NaN stays NaN and is not counted).

    Sort the m finite p-values ascending, p̃_(j) = max_{i<=j} min(1, (m - i + 1) p_(i)).
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.where(np.isfinite(p))[0]
    m = ok.size
    if m == 0:
        return out.tolist()
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


def significance_mark(p_adjusted: float, diff: float, alpha: float = 0.05) -> str:
    """``"↑"``/``"↓"`` when the difference is significant at ``alpha`` (better/worse than the reference), else ``"–"``."""
    if p_adjusted is None or not math.isfinite(p_adjusted) or p_adjusted >= alpha:
        return "–"
    return "↑" if diff > 0 else "↓"


__all__ = ["mean_sd", "format_mean_sd", "PairedTest", "paired_ttest", "paired_bootstrap", "holm", "significance_mark"]
