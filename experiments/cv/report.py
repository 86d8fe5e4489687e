"""The report of a cross-validation, in ``lightning_logs/<experiment>/cv/<name>/``.

- ``summary.json``: the options, every run (seed, fold, run folder, best epoch, metrics), and per validation metric
  its ``values`` (seed-major), ``mean``, ``std`` and ``ci95``, the corrected resampled t interval
  (:mod:`experiments.cv.statistics`); ``refit_run`` when a final model was trained.
- a table printed (each run, then mean +- half-width and the interval), ``scores.png`` (each run's value with the
  mean and the interval) and the same figure and the means in TensorBoard (``tensorboard --logdir`` the cv folder).
- ``oof_predictions.csv``: every pool sample once per seed, predicted by the run that did not train on it.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any

from experiments.cv.statistics import corrected_interval
from experiments.files import write_atomically
from experiments.terminal import render_table

SUMMARY = "summary.json"
OOF = "oof_predictions.csv"
FIGURE = "scores.png"
#: the columns of the prediction writer's table that the OOF table puts first, in this order
LEADING = ("source", "seed", "fold", "target", "prediction")


def aggregate(runs: list[dict[str, Any]], folds: int) -> dict[str, dict[str, Any]]:
    """Per metric every run has: values (in the runs' order), mean, std and the corrected ``ci95``."""
    names = sorted(set.intersection(*(set(r["metrics"]) for r in runs))) if runs else []
    out = {}
    for name in names:
        values = [float(r["metrics"][name]) for r in runs]
        interval = corrected_interval(values, folds)
        out[name] = {"values": values, "mean": interval.mean, "std": interval.std,
                     "ci95": [_number(interval.ci95[0]), _number(interval.ci95[1])]}
    return out


def _number(value: float) -> float | None:
    return value if math.isfinite(value) else None


def write_report(folder: Path, header: dict[str, Any], runs: list[dict[str, Any]], monitor: str) -> dict[str, Any]:
    """Write ``summary.json``, ``scores.png`` and the TensorBoard figure; print the table.

    Returns:
        The summary written.
    """
    metrics = aggregate(runs, header["folds"])
    summary = {**header, "monitor": monitor, "runs": runs, "metrics": metrics,
               "interval": "corrected resampled t, Nadeau and Bengio (2003): mean +- t(0.975, n-1) * "
                           "sqrt((1/n + 1/(K-1)) * std^2)"}
    folder.mkdir(parents=True, exist_ok=True)
    write_atomically(folder / SUMMARY, json.dumps(summary, indent=2, sort_keys=True) + "\n")
    print(table(summary))
    if monitor in metrics:
        _figure(folder, summary, monitor)
    return summary


def table(summary: dict[str, Any]) -> str:
    """Each run's metrics, then each metric's mean +- half-width and interval."""
    names = sorted(summary["metrics"])
    rows = [[str(r["seed"]), str(r["fold"]), str(r["best_epoch"]), *(f"{r['metrics'][n]:.4g}" for n in names),
             _shown(r.get("run", ""))] for r in summary["runs"]]
    lines = [render_table(["seed", "fold", "epoch", *names, "run"], rows), ""]
    n = len(summary["runs"])
    for name in names:
        m = summary["metrics"][name]
        low, high = m["ci95"]
        shown = f"{m['mean']:.4g} +- {(high - low) / 2:.2g}  (95% CI [{low:.4g}, {high:.4g}])" if low is not None \
            else f"{m['mean']:.4g}  (one run: no interval)"
        lines.append(f"{name}: {shown}, std {m['std']:.3g}, {n} runs")
    return "\n".join(lines)


def _shown(path: str) -> str:
    """A run folder relative to the working folder when below it."""
    if not path:
        return ""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def _figure(folder: Path, summary: dict[str, Any], monitor: str) -> None:
    """``scores.png`` and the same figure in TensorBoard: each run's value by seed, the mean, the interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from torch.utils.tensorboard import SummaryWriter

    m = summary["metrics"][monitor]
    runs = summary["runs"]
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    seeds = sorted({r["seed"] for r in runs})
    for i, seed in enumerate(seeds):
        xs = [r["fold"] + i * 0.08 for r in runs if r["seed"] == seed]
        ys = [r["metrics"][monitor] for r in runs if r["seed"] == seed]
        ax.scatter(xs, ys, s=22, label=f"seed {seed}")
    ax.axhline(m["mean"], color="black", lw=1, label=f"mean {m['mean']:.4f}")
    if m["ci95"][0] is not None:
        ax.axhspan(m["ci95"][0], m["ci95"][1], color="grey", alpha=0.2, label="95% CI (corrected)")
    ax.set_xlabel("fold")
    ax.set_ylabel(monitor)
    ax.set_xticks(range(summary["folds"]))
    ax.set_title(f"cv {summary['name']}: {summary['folds']} folds x {len(seeds)} seeds")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(folder / FIGURE)
    with SummaryWriter(str(folder / "tensorboard")) as writer:
        writer.add_figure(f"cv/{monitor}", fig)
        for name, values in summary["metrics"].items():
            writer.add_scalar(f"cv/{name}/mean", values["mean"])
            if values["ci95"][0] is not None:
                writer.add_scalar(f"cv/{name}/ci95_low", values["ci95"][0])
                writer.add_scalar(f"cv/{name}/ci95_high", values["ci95"][1])
    plt.close(fig)


def write_oof(folder: Path, runs: list[dict[str, Any]], pool_size: int) -> tuple[Path, list[str]]:
    """``oof_predictions.csv`` from each run's predictions of its held-out fold.

    Returns:
        The file, and what is missing (runs whose predictions are not on this machine, seeds not covering the
        pool exactly once).
    """
    header: list[str] | None = None
    rows: list[list[str]] = []
    problems: list[str] = []
    per_seed: dict[int, list[str]] = {}
    for run in runs:
        path = Path(run["oof"]) if run.get("oof") else None
        if path is None or not path.is_file():
            problems.append(f"seed {run['seed']} fold {run['fold']}: no predictions at {path} (another machine?)")
            continue
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            rest = [c for c in reader.fieldnames or [] if c not in (*LEADING, "index")]
            if header is None:
                header = [*LEADING, *rest]
            for row in reader:
                row["seed"], row["fold"] = str(run["seed"]), str(run["fold"])
                row.setdefault("target", row.get("target", ""))
                row.setdefault("prediction", row.get("prediction", ""))
                rows.append([row.get(c, "") for c in header])
                per_seed.setdefault(run["seed"], []).append(row["source"])
    for seed, sources in per_seed.items():
        if len(sources) != pool_size or len(set(sources)) != pool_size:
            problems.append(f"seed {seed}: {len(set(sources))} distinct samples of {pool_size} predicted")
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(header or list(LEADING))
    writer.writerows(rows)
    write_atomically(folder / OOF, text.getvalue())
    return folder / OOF, problems
