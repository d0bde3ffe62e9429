"""Statistics of a results table: mean +- std, Welch tests against the best, IQM with bootstrap CIs.

Conventions (stated again in every rendered table):

- ``std`` is the sample standard deviation (``ddof=1``); it is undefined
  (``None``) for a cell with a single seed.
- A cell is *not separable* from the row's best when a two-sided Welch t-test
  (``scipy.stats.ttest_ind(equal_var=False)``) gives p >= 0.05. The test needs
  >= 2 seeds on both sides; two constant samples are not separable when equal
  and separable when different (the t statistic is undefined there).
- IQM is the interquartile mean as in rliable: ``scipy.stats.trim_mean(x, 0.25)``,
  which drops ``floor(0.25 n)`` values at each end (IQM of [1, 2, 3, 4] = 2.5).
  Its 95% confidence interval is a percentile stratified bootstrap: seeds are
  resampled with replacement within each (task, dataset) stratum, with a fixed
  random state so the rendered table is deterministic.
- The probability of improvement P(X > Y) is, as in rliable, the mean over
  strata of the Mann-Whitney statistic P(x > y) + P(x = y) / 2.

scipy is imported inside the functions: worker processes import this package
and should not pay for scipy.stats at start-up.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05
BOOTSTRAP_REPS = 2000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Summary:
    """Mean, sample std (``None`` with one value) and count of a cell's per-seed scores."""

    mean: float
    std: float | None
    n: int


def summarize(values: Sequence[float]) -> Summary | None:
    """Mean and sample std (ddof=1) of ``values``; ``None`` when there are none."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return None
    std = float(np.std(x, ddof=1)) if x.size >= 2 else None
    return Summary(mean=float(np.mean(x)), std=std, n=int(x.size))


def welch_p_value(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided Welch t-test p-value, or ``None`` when either side has fewer than 2 values.

    Two zero-variance samples give 1.0 when their values are equal and 0.0 otherwise.
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.size < 2 or y.size < 2:
        return None
    if np.ptp(x) == 0 and np.ptp(y) == 0:
        return 1.0 if x[0] == y[0] else 0.0
    from scipy.stats import ttest_ind

    return float(ttest_ind(x, y, equal_var=False).pvalue)


def separable(a: Sequence[float], b: Sequence[float], alpha: float = ALPHA) -> bool | None:
    """Whether the Welch test separates ``a`` from ``b`` at level ``alpha`` (``None``: not testable)."""
    p_value = welch_p_value(a, b)
    return None if p_value is None else p_value < alpha


def best_keys(means: Mapping[str, float], higher_is_better: bool = True) -> list[str]:
    """Keys whose mean is the best (ties within 1e-12 relative all count as best)."""
    if not means:
        return []
    best = max(means.values()) if higher_is_better else min(means.values())
    return [key for key, value in means.items() if math.isclose(value, best, rel_tol=1e-12, abs_tol=1e-12)]


def iqm(x: np.ndarray | Sequence[float], axis: int | None = None) -> np.ndarray | float:
    """Interquartile mean: the mean of the middle 50% (``scipy.stats.trim_mean(x, 0.25)``)."""
    from scipy.stats import trim_mean

    return trim_mean(np.asarray(x, dtype=float), 0.25, axis=axis)


def stratified_bootstrap_ci(
    strata: Sequence[Sequence[float]],
    statistic: Callable[..., np.ndarray] = iqm,
    reps: int = BOOTSTRAP_REPS,
    confidence: float = CONFIDENCE,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """Percentile CI of ``statistic`` over the pooled strata, resampling within each stratum.

    ``statistic(samples, axis=1)`` must reduce a [reps, n] array to [reps].
    """
    groups = [np.asarray(s, dtype=float) for s in strata if len(s)]
    if not groups:
        raise ValueError("stratified_bootstrap_ci needs at least one non-empty stratum")
    rng = np.random.default_rng(seed)
    resampled = [g[rng.integers(0, g.size, size=(reps, g.size))] for g in groups]
    values = np.asarray(statistic(np.concatenate(resampled, axis=1), axis=1), dtype=float)
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class IntervalEstimate:
    """A point estimate with its confidence interval and the data it rests on."""

    value: float
    low: float
    high: float
    n_strata: int
    n_values: int


def iqm_with_ci(strata: Sequence[Sequence[float]], **bootstrap: object) -> IntervalEstimate | None:
    """IQM of all values pooled over strata with its stratified-bootstrap CI; ``None`` without data."""
    groups = [list(map(float, s)) for s in strata if len(s)]
    if not groups:
        return None
    pooled = [v for g in groups for v in g]
    low, high = stratified_bootstrap_ci(groups, **bootstrap)  # type: ignore[arg-type]
    return IntervalEstimate(float(iqm(pooled)), low, high, len(groups), len(pooled))


def probability_of_improvement(
    x_strata: Sequence[Sequence[float]],
    y_strata: Sequence[Sequence[float]],
    higher_is_better: bool = True,
) -> float | None:
    """P(X improves on Y): mean over paired strata of P(x > y) + P(x = y) / 2.

    Strata where either side has no value are skipped; ``None`` when none remain.
    """
    scores = []
    for xs, ys in zip(x_strata, y_strata):
        if not len(xs) or not len(ys):
            continue
        x = np.asarray(xs, dtype=float)[:, None]
        y = np.asarray(ys, dtype=float)[None, :]
        wins = (x > y) if higher_is_better else (x < y)
        scores.append(float(np.mean(wins + 0.5 * (x == y))))
    return float(np.mean(scores)) if scores else None
