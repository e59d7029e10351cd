"""Uncertainty of evaluation numbers: percentile bootstrap CIs and a paired comparison of two policies.

Every policy is evaluated on the same simulated users with the same luck (common random numbers), so
two policies' per-user returns are paired: the difference is bootstrapped by resampling users, which
is far tighter than comparing two independent intervals.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as sps

CONFIDENCE = 0.95
N_BOOTSTRAP = 2000


def bootstrap_ci(
    values: np.ndarray, confidence: float = CONFIDENCE, n_boot: int = N_BOOTSTRAP, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of `values` (resampling its entries)."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if len(values) == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    if len(values) == 1:
        return float(values[0]), float(values[0])
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))
    means = values[idx].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def mean_with_ci(values: np.ndarray, seed: int = 0) -> dict[str, float]:
    """{mean, ci_low, ci_high, stderr, n} of `values`, JSON-able."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    lo, hi = bootstrap_ci(values, seed=seed)
    n = len(values)
    return {
        "mean": float(values.mean()),
        "ci_low": lo,
        "ci_high": hi,
        "stderr": float(values.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0,
        "n": n,
    }


def paired_comparison(a: np.ndarray, b: np.ndarray, seed: int = 0) -> dict[str, float]:
    """Effect of `a` over `b` on the same users: mean difference, its bootstrap CI, and two p-values.

    `p_value` is the paired t-test; `p_wilcoxon` the Wilcoxon signed-rank test (no normality assumed;
    1.0 when every difference is zero).
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"paired comparison needs the same users: got {a.shape} and {b.shape}")
    diff = a - b
    out = {f"diff_{k}": v for k, v in mean_with_ci(diff, seed=seed).items() if k != "n"}
    if np.allclose(diff, diff[0]):
        out["p_value"] = 0.0 if diff[0] != 0 else 1.0
        out["p_wilcoxon"] = out["p_value"]
    else:
        out["p_value"] = float(sps.ttest_rel(a, b).pvalue)
        out["p_wilcoxon"] = float(sps.wilcoxon(diff, zero_method="zsplit").pvalue)
    out["n"] = len(diff)
    return out
