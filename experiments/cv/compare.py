"""``cv --compare DIR_A DIR_B``: is A better than B? The paired corrected resampled t test, run for run.

Both cvs must have split the same pool into the same folds under the same seeds (their ``summary.json`` records a
fingerprint of the pool and of each seed's assignment): then run (seed, fold) of A and of B were trained and
validated on the same samples, and their difference is a paired observation. The differences' mean gets the
corrected interval of :mod:`experiments.cv.statistics`, and the two-sided p-value of the corrected t statistic.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from experiments.cv.report import SUMMARY
from experiments.cv.statistics import paired_comparison
from experiments.files import write_atomically

RESULT = "compare.json"


def read_cv(folder: Path) -> dict[str, Any]:
    """A cv's ``summary.json``.

    Raises:
        ValueError: the folder holds no readable cv summary (not a cv folder, or not finished).
    """
    path = folder / SUMMARY
    try:
        summary = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"--compare {folder}: no {SUMMARY}; pass the folder of a finished cv "
                         "(lightning_logs/<experiment>/cv/<name>)") from None
    except (OSError, ValueError) as err:
        raise ValueError(f"--compare {folder}: {SUMMARY} cannot be read ({err})") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("runs"), list) or "folds" not in summary:
        raise ValueError(f"--compare {folder}: {SUMMARY} is not a cv summary")
    return summary


def _mismatch(a: dict[str, Any], b: dict[str, Any]) -> str | None:
    for key, what in (("folds", "folds"), ("seeds", "seeds")):
        if a.get(key) != b.get(key):
            return f"{what} {a.get(key)} and {b.get(key)}"
    if (a.get("pool") or {}).get("fingerprint") != (b.get("pool") or {}).get("fingerprint"):
        sizes = [(s.get("pool") or {}).get("size") for s in (a, b)]
        return f"other data (pools of {sizes[0]} and {sizes[1]} samples)"
    if a.get("assignments") != b.get("assignments"):
        return "other fold assignments (another --group_by?)"
    return None


def compare(dir_a: Path, dir_b: Path, metric: str | None = None) -> dict[str, Any]:
    """Compare cv A with cv B, print the result and write it to ``DIR_A/compare.json``.

    Returns:
        What was written.

    Raises:
        ValueError: the cvs cannot be paired (other folds, seeds or data), or lack the metric.
    """
    a, b = read_cv(dir_a), read_cv(dir_b)
    problem = _mismatch(a, b)
    if problem:
        raise ValueError(f"--compare {dir_a} {dir_b}: not paired: {problem}; compare cvs run with the same "
                         "--folds, --seeds, --group_by and data")
    metric = metric or a.get("monitor")
    key = {(r["seed"], r["fold"]): r for r in b["runs"]}
    pairs = [(r["metrics"].get(metric), key.get((r["seed"], r["fold"]), {}).get("metrics", {}).get(metric))
             for r in a["runs"]]
    if not pairs or any(x is None or y is None for x, y in pairs):
        raise ValueError(f"--compare: {metric} is not recorded for every run of both cvs; pass --metric with one of "
                         f"{', '.join(sorted(a.get('metrics', {})))}")
    result = paired_comparison([x for x, _ in pairs], [y for _, y in pairs], int(a["folds"]))
    interval = result.interval
    written = {"a": str(dir_a), "b": str(dir_b), "metric": metric, "n": interval.n,
               "mean_a": sum(x for x, _ in pairs) / len(pairs), "mean_b": sum(y for _, y in pairs) / len(pairs),
               "differences": result.differences, "mean_difference": interval.mean, "std_difference": interval.std,
               "ci95": list(interval.ci95), "t": result.t, "p_value": result.p_value,
               "test": "paired corrected resampled t test (Nadeau and Bengio 2003), two-sided"}
    write_atomically(dir_a / RESULT, json.dumps(written, indent=2) + "\n")
    low, high = interval.ci95
    verdict = "the interval contains 0: no difference shown" if low <= 0 <= high else (
        "A is higher" if low > 0 else "B is higher")
    print(f"{metric}: A {a.get('name', dir_a)} {written['mean_a']:.4f}, "
          f"B {b.get('name', dir_b)} {written['mean_b']:.4f}")
    print(f"A - B = {interval.mean:+.4f}, 95% CI [{low:+.4f}, {high:+.4f}] (corrected), t = {result.t:.3f}, "
          f"p = {result.p_value:.4g}, n = {interval.n} paired runs: {verdict}")
    print(f"Written: {dir_a / RESULT}")
    return written
