"""``python -m experiments runs [EXPERIMENT] [--csv] [--sort METRIC]``: one row per run, what each reached
and what differed; a finished cross-validation is one row (``version`` ``cv <name>``, its monitor's mean +- the
half-width of its corrected 95% interval).

Rows come from each run folder's ``summary.json``; a run that died before writing one is still
listed, from its ``config.yaml`` and its checkpoints. The columns after the fixed ones are the config
values that differ between the runs listed (per experiment), so a change shows at a glance.
"""

from __future__ import annotations

import csv
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from experiments.runs import flat_config
from experiments.runs.checkpoints import best_recorded
from experiments.runs.folder import ExperimentFolder, RunFolder
from experiments.runs.processes import process_gone
from experiments.runs.summary import load_summary, test_metric
from experiments.terminal import OneLineParser, render_table

FIXED = ["experiment", "version", "started", "state", "epochs", "best", "best_epoch", "test", "wall_time", "seed"]


def _state(summary: dict[str, Any], run: RunFolder, problem: str | None) -> str:
    if problem is not None:
        return "unreadable"
    state = summary.get("state")
    if state == "running":
        return "killed" if process_gone(summary.get("host"), summary.get("pid")) else "running"
    if state:
        return state
    # no summary: the run died before its first epoch was recorded, or was only evaluated
    return "killed" if run.checkpoints.is_dir() else "failed"


def _gone(summary: dict[str, Any], state: str) -> str | None:
    """Why a run shows as killed: its process ended without updating the summary."""
    if state != "killed":
        return None
    if summary.get("pid") is not None:
        return (f"process {summary['pid']} on {summary.get('host') or 'this host'} ended without a word "
                "(SIGKILL, out of memory, a lost node)")
    return "no summary: the run ended before its first epoch was recorded"


def _config(run: RunFolder) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(run.config().read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}
    return flat_config.flatten(raw) if isinstance(raw, dict) else {}


def _cross_validations(folder: ExperimentFolder) -> list[tuple[Path, dict[str, Any]]]:
    """The experiment's finished cvs: ``(folder, summary)`` of each ``cv/<name>/summary.json`` that can be read."""
    found = []
    for path in sorted(folder.cross_validations.glob("*/summary.json")):
        try:
            summary = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(summary, dict) and isinstance(summary.get("runs"), list) and summary.get("metrics"):
            found.append((path.parent, summary))
    return found


def _cv_record(folder: ExperimentFolder, where: Path, cv: dict[str, Any], members: list[dict[str, Any]]) -> dict:
    """One row for a whole cv: its monitor's mean +- the half-width of the corrected 95% interval."""
    monitor = cv.get("monitor") or ""
    metric = (cv.get("metrics") or {}).get(monitor) or {}
    low, high = (metric.get("ci95") or [None, None])[:2]
    config = dict(members[0]["config"]) if members else {}
    for key in [k for k in config if k.startswith("cv_fold.")] + ["seed_everything"]:
        config.pop(key, None)
    seeds = cv.get("seeds") or []
    return {
        "experiment": folder.name, "version": f"cv {cv.get('name', where.name)}",
        "started": min((m["started"] for m in members), default=""), "state": f"{len(cv['runs'])} runs",
        "epochs": None, "monitor": monitor, "mode": cv.get("mode"), "best_metric": monitor,
        "best_value": metric.get("mean"), "best_half_width": (high - low) / 2 if low is not None else None,
        "best_epoch": None, "test_metric": None, "test_value": None, "test_metrics": {},
        "wall_time_s": sum(m["wall_time_s"] or 0 for m in members) or None,
        "seed": f"{seeds[0]}-{seeds[-1]}" if len(seeds) > 1 else (seeds[0] if seeds else None),
        "reason": f"{cv.get('folds')} folds x {len(seeds)} seeds", "config": config, "run_dir": str(where),
    }


def collect(root: Path, experiment: str | None) -> list[dict[str, Any]]:
    """One record per run folder under ``root/lightning_logs`` (of ``experiment``, or of all); the runs of a
    finished cross-validation as one record.
    """
    experiments = [ExperimentFolder.at(root, experiment)] if experiment else ExperimentFolder.all_under(root)
    records = []
    for folder in experiments:
        start = len(records)
        for run in folder.runs():
            summary, problem = load_summary(run)
            summary = summary or best_recorded(run.last_checkpoint)
            config = _config(run)
            if not summary and not config and problem is None:
                continue  # an empty folder (a run that claimed its version and stopped at once)
            state = _state(summary, run, problem)
            started = summary.get("started")
            if not started:
                stamp = run.config() if run.config().exists() else run.path
                started = datetime.fromtimestamp(stamp.stat().st_mtime).astimezone().isoformat(timespec="seconds")
            best = summary.get("best") or {}
            test = (summary.get("test") or {}).get("metrics") or {}
            monitor = summary.get("monitor") or best.get("metric") or ""
            test_name = test_metric(monitor) if monitor else ""
            test_value = test.get(test_name) if test_name in test else next(iter(test.values()), None)
            records.append({
                "experiment": folder.name,
                "version": run.version,
                "started": started,
                "state": state,
                "epochs": summary.get("epochs"),
                "monitor": monitor,
                "mode": summary.get("mode"),
                "best_metric": best.get("metric"),
                "best_value": best.get("value"),
                "best_epoch": best.get("epoch"),
                "test_metric": test_name if test_name in test else next(iter(test), None),
                "test_value": test_value,
                "test_metrics": test,
                "wall_time_s": summary.get("wall_time_s"),
                "seed": summary.get("seed", config.get("seed_everything")),
                "reason": problem or summary.get("reason") or _gone(summary, state),
                "config": config,
                "run_dir": str(run.path),
            })
        for where, cv in _cross_validations(folder):
            runs = {str(Path(r.get("run", "")).resolve()) for r in cv["runs"]}
            members = [r for r in records[start:] if str(Path(r["run_dir"]).resolve()) in runs]
            records[start:] = [r for r in records[start:] if r not in members]
            records.append(_cv_record(folder, where, cv, members))
    return records


def differing_keys(records: list[dict[str, Any]]) -> list[str]:
    """Config keys whose values are not the same in every listed run of the same experiment."""
    keys: list[str] = []
    by_experiment: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_experiment.setdefault(record["experiment"], []).append(record)
    for group in by_experiment.values():
        if len(group) < 2:
            continue
        every = sorted({k for r in group for k in r["config"]})
        for key in every:
            if key in ("experiment", "seed_everything") or key.startswith("cv_fold."):  # a cv's own: in its row
                continue
            values = {repr(r["config"].get(key)) for r in group}
            if len(values) > 1 and key not in keys:
                keys.append(key)
    return keys


def short_names(keys: list[str]) -> dict[str, str]:
    """The shortest dotted suffix that is still unique (``model.optimizer.lr`` -> ``lr``)."""
    names = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            suffix = ".".join(parts[-n:])
            if sum(1 for other in keys if other == suffix or other.endswith("." + suffix)) == 1:
                names[key] = suffix
                break
        else:
            names[key] = key
    return names


def sort_key(metric: str, records: list[dict[str, Any]], reverse: bool = False):
    """A key that orders ``records`` by ``metric``, best first for a metric, smallest first otherwise.

    ``best``, the monitored metric and its test counterpart (``test/acc`` for ``val/acc``) follow the
    ``mode`` each run's summary records (``max``: descending); a loss is ascending; anything else
    (epochs, wall time, a config value) ascending. ``reverse`` flips the order. Runs without the value
    come last either way.
    """

    def value(record: dict[str, Any]) -> float | None:
        if metric in ("best", record.get("best_metric"), f"{record.get('best_metric')}_best"):
            return record.get("best_value")
        if metric in record["test_metrics"]:
            return record["test_metrics"][metric]
        if metric in ("epochs", "version", "seed", "wall_time_s"):
            return record.get(metric)
        if metric in ("wall", "wall_time"):
            return record.get("wall_time_s")
        found = record["config"].get(metric)
        return found if isinstance(found, (int, float)) and not isinstance(found, bool) else None

    def descending(record: dict[str, Any]) -> bool:
        monitor = record.get("monitor") or record.get("best_metric") or ""
        follows_mode = metric == "best" or (monitor and metric in (monitor, f"{monitor}_best", test_metric(monitor)))
        if follows_mode:
            return record.get("mode") == "max"
        if metric.endswith("/loss") or metric.startswith(("train/", "val/", "test/")) and "loss" in metric:
            return False
        # another test metric of a run whose monitored metric is maximised (per-class accuracies)
        return metric.startswith("test/") and record.get("mode") == "max"

    present = [v for v in (value(r) for r in records) if v is not None]
    if not present:
        raise ValueError(f"--sort {metric}: no listed run has it; use best, a test metric (e.g. test/acc), epochs, "
                         "wall_time or a numeric config key")

    def key(record: dict[str, Any]) -> tuple:
        v = value(record)
        if v is None:
            return (True, 0.0)
        ordered = -v if descending(record) else v
        return (False, -ordered if reverse else ordered)

    return key


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _wall(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 10:
        return f"{seconds:.1f}s"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def rows(records: list[dict[str, Any]], keys: list[str], for_csv: bool) -> tuple[list[str], list[list[str]]]:
    """The header and the rows of the runs table (every column for CSV, the ones that differ otherwise)."""
    names = short_names(keys)
    if for_csv:
        header = ["experiment", "version", "started", "state", "epochs", "best_metric", "best_value", "best_epoch",
                  "test_metric", "test_value", "wall_time_s", "seed", "reason", "run_dir", *keys,
                  "best_ci95_half_width", "test_ece"]
        body = [[_fmt(r["experiment"]), _fmt(r["version"]), r["started"], r["state"], _fmt(r["epochs"]),
                 _fmt(r["best_metric"]), repr(r["best_value"]) if r["best_value"] is not None else "",
                 _fmt(r["best_epoch"]), _fmt(r["test_metric"]),
                 repr(r["test_value"]) if r["test_value"] is not None else "", _fmt(r["wall_time_s"]),
                 _fmt(r["seed"]), _fmt(r["reason"]), r["run_dir"], *[_fmt(r["config"].get(k)) for k in keys],
                 repr(r["best_half_width"]) if r.get("best_half_width") is not None else "",
                 repr(r["test_metrics"]["test/ece"]) if r["test_metrics"].get("test/ece") is not None else ""]
                for r in records]
        return header, body
    header = [*FIXED, *[names[k] for k in keys]]
    body = []
    for r in records:
        best = f"{r['best_metric']}={_fmt(r['best_value'])}" if r["best_value"] is not None else ""
        if r.get("best_half_width") is not None:
            best += f"+-{_fmt(r['best_half_width'], 2)}"
        test = f"{r['test_metric']}={_fmt(r['test_value'])}" if r["test_value"] is not None else ""
        if r["test_metrics"].get("test/ece") is not None:
            test += f" ece={_fmt(r['test_metrics']['test/ece'], 3)}"
        started = r["started"][:16].replace("T", " ")
        body.append([r["experiment"], str(r["version"]), started, r["state"], _fmt(r["epochs"]), best,
                     _fmt(r["best_epoch"]), test, _wall(r["wall_time_s"]), _fmt(r["seed"]),
                     *[_fmt(r["config"].get(k)) for k in keys]])
    return header, body


def main(argv: list[str]) -> None:
    """``python -m experiments runs``: print one row per run."""
    parser = OneLineParser(prog="python -m experiments runs", description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment", nargs="?", help="list only this experiment's runs")
    parser.add_argument("--csv", action="store_true", help="print CSV (every column) instead of a table")
    parser.add_argument("--sort", metavar="METRIC", help="sort by best, a test metric (test/acc), epochs, wall_time "
                        "or a numeric config key; the monitored metric best first, in the mode its run recorded")
    parser.add_argument("--reverse", action="store_true", help="reverse the --sort order")
    parser.add_argument("--root", default=".", help="folder holding lightning_logs/ (default: here)")
    args = parser.parse_args(argv)
    root = Path(args.root)
    records = collect(root, args.experiment)
    if not records:
        where = ExperimentFolder.at(root, args.experiment).path if args.experiment else root / "lightning_logs"
        raise ValueError(f"no runs under {where}; run `python -m experiments fit -c experiments/NAME.yaml` first"
                         + ("" if not args.experiment else ", or check the experiment's name"))
    if args.sort:
        records.sort(key=sort_key(args.sort, records, args.reverse))
    keys = differing_keys(records)
    header, body = rows(records, keys, args.csv)
    if args.csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(header)
        writer.writerows(body)
    else:
        print(render_table(header, body))
