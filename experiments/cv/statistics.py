"""The statistics of a cross-validation: the corrected resampled t interval and the paired corrected t test.

The runs of a repeated K-fold cross-validation share most of their training data, so their scores are correlated
and the naive interval (``t * std / sqrt(n)``) is too narrow: it would call differences significant that are
not. Nadeau and Bengio (2003, "Inference for the Generalization Error", Machine Learning 52) correct the variance
of the mean of ``n`` such scores from ``std^2 / n`` to ``(1/n + n_test/n_train) * std^2``; with K folds the held-out
share over the training share is ``1/(K-1)``. Bouckaert and Frank (2004) show the corrected repeated k-fold test
keeps its nominal type I error where the naive one does not. scipy gives the t quantiles and tails.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Interval:
    """The mean of some runs' scores and its corrected 95% interval.

    Attributes:
        mean: the mean over the runs.
        std: the sample standard deviation (ddof 1); 0 for one run.
        ci95: ``(low, high)``; ``(nan, nan)`` with fewer than two runs.
        n: how many runs.
    """

    mean: float
    std: float
    ci95: tuple[float, float]
    n: int

    @property
    def half_width(self) -> float:
        """Half the interval's width (what ``mean +- x`` prints)."""
        return (self.ci95[1] - self.ci95[0]) / 2


def _corrected_se(values: Sequence[float], folds: int) -> tuple[float, float, float]:
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    se = math.sqrt((1 / n + 1 / (folds - 1)) * std ** 2) if n > 1 else math.nan
    return mean, std, se


def corrected_interval(values: Sequence[float], folds: int, level: float = 0.95) -> Interval:
    """Mean +- t(1 - (1 - level)/2, n - 1) * sqrt((1/n + 1/(K-1)) * std^2) over ``values`` from K-fold runs.

    Raises:
        ValueError: no values, or fewer than 2 folds.
    """
    from scipy import stats

    if not values:
        raise ValueError("no runs to summarise")
    if folds < 2:
        raise ValueError(f"{folds} folds: the correction needs at least 2")
    n = len(values)
    mean, std, se = _corrected_se(values, folds)
    if n < 2:
        return Interval(mean, std, (math.nan, math.nan), n)
    half = float(stats.t.ppf(1 - (1 - level) / 2, n - 1)) * se
    return Interval(mean, std, (mean - half, mean + half), n)


@dataclass(frozen=True)
class Comparison:
    """A paired corrected t test of two cross-validations on the same folds.

    Attributes:
        differences: run by run, A minus B.
        interval: the mean difference and its corrected 95% interval.
        t: the corrected t statistic.
        p_value: its two-sided p-value (n - 1 degrees of freedom).
    """

    differences: list[float]
    interval: Interval
    t: float
    p_value: float


def paired_comparison(a: Sequence[float], b: Sequence[float], folds: int) -> Comparison:
    """The corrected resampled paired t test of A against B, run for run (same seed, same fold).

    Raises:
        ValueError: the two have different numbers of runs, or fewer than two.
    """
    from scipy import stats

    if len(a) != len(b):
        raise ValueError(f"the two cross-validations have {len(a)} and {len(b)} runs; they must pair run for run")
    if len(a) < 2:
        raise ValueError("a paired comparison needs at least two runs each")
    differences = [x - y for x, y in zip(a, b, strict=True)]
    interval = corrected_interval(differences, folds)
    mean, _, se = _corrected_se(differences, folds)
    if se == 0:
        t = 0.0 if mean == 0 else math.copysign(math.inf, mean)
        p = 1.0 if mean == 0 else 0.0
    else:
        t = mean / se
        p = float(2 * stats.t.sf(abs(t), len(differences) - 1))
    return Comparison(differences, interval, t, p)
