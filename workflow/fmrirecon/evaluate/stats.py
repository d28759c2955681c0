"""Statistics for reported metrics: CIs over images and paired tests between methods.

Every figure the workflow reports carries a 95% CI over test images (paper 002 shows 95% bootstrap
CIs on all charts): the percentile bootstrap, except for hit rates (every per-image value 0 or 1),
whose CI is the exact binomial (Clopper-Pearson) one. A bootstrap of 0 hits in 50 images is
[0, 0], which excludes any chance level above 0, although a chance of 0.004 gives 0 hits in 50
images 82% of the time. Methods evaluated on the same images are compared with the paired two-sided
Wilcoxon signed-rank test (paper 002, "Statistics"), through scipy.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as _st

from ..errors import InputError

STATISTICS = ("mean", "median")


def _clean(values) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64).ravel()
    return v[~np.isnan(v)]


def point_estimate(values, statistic: str = "mean") -> float:
    """Mean or median of the non-NaN values (NaN when there are none)."""
    v = _clean(values)
    if statistic not in STATISTICS:
        raise InputError(f"unknown statistic '{statistic}': expected one of {STATISTICS}")
    if v.size == 0:
        return float("nan")
    return float(v.mean() if statistic == "mean" else np.median(v))


def bootstrap_ci(
    values,
    *,
    statistic: str = "mean",
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean/median over items (images): ``(N,)`` → ``(low, high)``.

    Items are resampled with replacement ``n_boot`` times with a seeded generator; NaNs are
    dropped first. A single item gives a zero-width interval; none gives ``(nan, nan)``.
    """
    v = _clean(values)
    if not 0 < level < 1:
        raise InputError(f"CI level must be in (0, 1), got {level}")
    if statistic not in STATISTICS:
        raise InputError(f"unknown statistic '{statistic}': expected one of {STATISTICS}")
    if v.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    out = np.empty(n_boot)
    step = max(1, int(2e7 // max(v.size, 1)))  # bound memory of the index matrix
    for s in range(0, n_boot, step):
        b = min(step, n_boot - s)
        sample = v[rng.integers(0, v.size, size=(b, v.size))]
        out[s : s + b] = sample.mean(axis=1) if statistic == "mean" else np.median(sample, axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(out, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def clopper_pearson(hits: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact binomial (Clopper-Pearson) CI of a proportion ``hits / n``: the beta quantiles
    ``B(a/2; k, n-k+1)`` and ``B(1-a/2; k+1, n-k)``, with 0 and 1 at the ends (``a = 1 - level``)."""
    if n <= 0 or not 0 <= hits <= n:
        raise InputError(f"Clopper-Pearson CI needs 0 <= hits <= n and n > 0, got {hits} of {n}")
    if not 0 < level < 1:
        raise InputError(f"CI level must be in (0, 1), got {level}")
    alpha = 1.0 - level
    lo = 0.0 if hits == 0 else float(_st.beta.ppf(alpha / 2, hits, n - hits + 1))
    hi = 1.0 if hits == n else float(_st.beta.ppf(1 - alpha / 2, hits + 1, n - hits))
    return lo, hi


#: ``interval`` of :func:`summarise`: how its CI was made.
BOOTSTRAP = "percentile bootstrap over images"
EXACT = "exact binomial (Clopper-Pearson): every per-image value is a hit (1) or a miss (0)"


def summarise(values, *, statistic: str = "mean", seed: int = 0, n_boot: int = 2000, exact: bool = True) -> dict:
    """``{"value", "ci_low", "ci_high", "n", "statistic", "interval"}`` of per-image values.

    The mean of hits and misses (every value 0 or 1) gets the exact binomial CI, anything else (and
    everything with ``exact=False``, for values that are not per-item hits) the percentile
    bootstrap; ``interval`` says which."""
    v = _clean(values)
    if exact and statistic == "mean" and v.size and np.all((v == 0.0) | (v == 1.0)):
        (lo, hi), interval = clopper_pearson(int(v.sum()), int(v.size)), EXACT
    else:
        (lo, hi), interval = bootstrap_ci(v, statistic=statistic, seed=seed, n_boot=n_boot), BOOTSTRAP
    return {
        "value": point_estimate(v, statistic),
        "ci_low": lo,
        "ci_high": hi,
        "n": int(v.size),
        "statistic": statistic,
        "interval": interval,
    }


def paired_wilcoxon(a, b, *, alternative: str = "two-sided") -> dict:
    """Paired Wilcoxon signed-rank test of per-image scores of two methods on the same images.

    ``a``, ``b``: ``(N,)`` aligned per-image values (NaN pairs dropped). Returns ``statistic``,
    ``p_value`` (scipy ``wilcoxon``, ``zero_method="wilcox"``; the exact distribution for up to 50
    pairs without zero or tied differences, else the normal approximation with tie correction:
    ``method``), ``n`` (pairs),
    ``n_nonzero`` and ``median_difference`` (a - b). All-zero differences give p = 1.
    """
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise InputError(f"paired test needs aligned per-image values, got {x.shape} and {y.shape}")
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    diff = x - y
    nonzero = int(np.count_nonzero(diff))
    out = {
        "test": "wilcoxon signed-rank (paired, scipy.stats.wilcoxon)",
        "alternative": alternative,
        "n": int(diff.size),
        "n_nonzero": nonzero,
        "median_difference": float(np.median(diff)) if diff.size else float("nan"),
    }
    if nonzero == 0:
        out.update(statistic=0.0, p_value=1.0)
        return out
    # exact null distribution for up to 50 pairs without zero or tied differences; otherwise the
    # normal approximation with tie correction, as R's wilcox.test does (scipy's "auto" would run a
    # 9999-resample permutation test there: 0.6 s per test, minutes for a results table)
    ties = np.unique(np.abs(diff[diff != 0])).size < nonzero
    method = "exact" if diff.size <= 50 and nonzero == diff.size and not ties else "approx"
    res = _st.wilcoxon(x, y, alternative=alternative, method=method)
    out.update(statistic=float(res.statistic), p_value=float(res.pvalue), method=method)
    return out


def compare_methods(result_a: dict, result_b: dict, metric_key: str) -> dict:
    """Paired Wilcoxon between two :func:`~fmrirecon.evaluate.protocols.evaluate_protocol` results.

    Uses the ``per_image`` lists of ``metric_key``; both results must cover the same images.
    """
    try:
        a = result_a["metrics"][metric_key]["per_image"]
        b = result_b["metrics"][metric_key]["per_image"]
    except KeyError as exc:
        raise InputError(f"metric '{metric_key}' is missing from one of the results") from exc
    a = [np.nan if v is None else v for v in a]
    b = [np.nan if v is None else v for v in b]
    return paired_wilcoxon(a, b)


def binomial_sd(p: float, n: int) -> float:
    """Standard deviation of a proportion from ``n`` Bernoulli(p) trials: ``sqrt(p (1 - p) / n)``."""
    if n <= 0:
        raise InputError(f"binomial sd needs n > 0, got {n}")
    return math.sqrt(p * (1.0 - p) / n)


__all__ = [
    "binomial_sd",
    "bootstrap_ci",
    "clopper_pearson",
    "compare_methods",
    "paired_wilcoxon",
    "point_estimate",
    "summarise",
]
