"""Fold assignments (stratified, disjoint, covering, fixed by the seed alone, groups kept together) and the
corrected interval and paired test against a hand computation with scipy.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from datamodules.base.folds import Fold, Pool, assign_folds, fold_rows, groups_from_paths
from experiments.cv.statistics import corrected_interval, paired_comparison


def pool(counts=(30, 17, 9), groups: bool = False) -> Pool:
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    sources = [f"c{int(label)}/subject{i % 7}_{i:03d}.png" for i, label in enumerate(labels.tolist())]
    return Pool(sources, labels, groups_from_paths(sources, r"subject(\d+)_") if groups else None)


def test_folds_are_stratified_disjoint_and_cover_the_pool():
    p = pool()
    assigned = assign_folds(p, 4, seed=3)
    assert sorted(set(assigned.tolist())) == [0, 1, 2, 3]
    rows = [fold_rows(p, Fold(4, k, 3)) for k in range(4)]
    held_out = torch.cat([r["val"] for r in rows]).sort().values
    assert torch.equal(held_out, torch.arange(len(p.sources)))  # every sample held out exactly once
    for r in rows:
        assert set(r["train"].tolist()).isdisjoint(r["val"].tolist())
        assert len(r["train"]) + len(r["val"]) == len(p.sources)
    for c, n in enumerate((30, 17, 9)):  # each fold holds floor or ceil of n / K of every class
        per_fold = [int(((assigned == k) & (p.labels.numpy() == c)).sum()) for k in range(4)]
        assert max(per_fold) - min(per_fold) <= 1 and sum(per_fold) == n


def test_the_seed_alone_fixes_the_assignment_not_the_listing_order():
    p = pool()
    first = assign_folds(p, 5, seed=0)
    assert np.array_equal(first, assign_folds(pool(), 5, seed=0))
    assert not np.array_equal(first, assign_folds(p, 5, seed=1))
    order = torch.randperm(len(p.sources), generator=torch.Generator().manual_seed(0))
    shuffled = Pool([p.sources[i] for i in order.tolist()], p.labels[order])
    again = assign_folds(shuffled, 5, seed=0)
    by_source = dict(zip(shuffled.sources, again.tolist(), strict=True))
    assert [by_source[s] for s in p.sources] == first.tolist()


def test_groups_stay_in_one_fold():
    p = pool(groups=True)
    assigned = assign_folds(p, 3, seed=2)
    fold_of: dict[str, set[int]] = {}
    for group, fold in zip(p.groups, assigned.tolist(), strict=True):
        fold_of.setdefault(group, set()).add(fold)
    assert len(fold_of) == 7 and all(len(f) == 1 for f in fold_of.values())
    regression = Pool(p.sources, None, p.groups)  # unstratified groups too
    plain = assign_folds(regression, 3, seed=2)
    assert all(len({f for g2, f in zip(p.groups, plain.tolist(), strict=True) if g2 == g}) == 1 for g in fold_of)


@pytest.mark.parametrize("folds, expected", [
    (1, r"--folds 1: cross-validation needs at least 2 folds"),
    (10, r"--folds 10: class 2 has 9 samples.*pass --folds 9 or fewer"),
])
def test_impossible_fold_counts_are_one_line(folds, expected):
    with pytest.raises(ValueError, match=expected):
        assign_folds(pool(), folds, seed=0)


def test_groups_that_hold_a_whole_class_are_refused():
    labels = torch.tensor([0] * 6 + [1] * 6)
    sources = [f"{'a' if i < 6 else 'b'}/{i}.png" for i in range(12)]
    p = Pool(sources, labels, groups_from_paths(sources, r"^(\w)/"))
    with pytest.raises(ValueError, match="fewer than the folds"):
        assign_folds(p, 3, seed=0)
    with pytest.raises(ValueError, match=r"fold \d of seed 0 holds every sample of class"):
        assign_folds(Pool(sources, labels, [s[0] for s in sources]), 2, seed=0)  # a group per class
    mixed = Pool(sources, labels, [str(i % 3) for i in range(12)])  # groups that mix classes are fine
    assert len(set(assign_folds(mixed, 3, seed=0).tolist())) == 3


def test_a_regex_that_misses_a_path_is_one_line():
    with pytest.raises(ValueError, match=r"--group_by '\^x' does not match a/1.png"):
        groups_from_paths(["a/1.png"], "^x")
    with pytest.raises(ValueError, match="not a regular expression"):
        groups_from_paths(["a/1.png"], "(")


def test_corrected_interval_equals_a_hand_computation():
    values = [0.81, 0.84, 0.79, 0.86, 0.83, 0.80, 0.85, 0.82, 0.84, 0.78]
    k, n = 5, len(values)
    mean, std = float(np.mean(values)), float(np.std(values, ddof=1))
    half = stats.t.ppf(0.975, n - 1) * math.sqrt((1 / n + 1 / (k - 1)) * std ** 2)
    got = corrected_interval(values, k)
    assert got.mean == pytest.approx(mean) and got.std == pytest.approx(std)
    assert got.ci95 == pytest.approx((mean - half, mean + half))
    naive = stats.t.ppf(0.975, n - 1) * std / math.sqrt(n)
    assert got.half_width == pytest.approx(naive * math.sqrt(1 + n / (k - 1)))  # runs share data: wider


def test_paired_comparison_equals_a_hand_computation():
    a = [0.90, 0.91, 0.89, 0.92, 0.90, 0.91]
    b = [0.88, 0.90, 0.89, 0.90, 0.87, 0.90]
    k = 3
    d = np.array(a) - np.array(b)
    se = math.sqrt((1 / len(d) + 1 / (k - 1)) * d.var(ddof=1))
    t = d.mean() / se
    p = 2 * stats.t.sf(abs(t), len(d) - 1)
    got = paired_comparison(a, b, k)
    assert got.t == pytest.approx(t) and got.p_value == pytest.approx(p)
    assert got.interval.mean == pytest.approx(d.mean())
    half = stats.t.ppf(0.975, len(d) - 1) * se
    assert got.interval.ci95 == pytest.approx((d.mean() - half, d.mean() + half))
    with pytest.raises(ValueError, match="pair run for run"):
        paired_comparison(a, b[:-1], k)
