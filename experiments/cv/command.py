"""``python -m experiments cv -c X.yaml --folds K --seeds N [--name NAME] [--group_by G] [--refit true]
[--storage URL] [--study NAME] [any fit option]``: repeated stratified K-fold cross-validation with intervals;
``cv --compare DIR_A DIR_B``: the paired corrected t test of two cvs on the same folds.

The pool is the data module's training and validation data (a test split is never looked at). Each seed gives
another stratified assignment of the pool to K folds (scikit-learn's splitters; ``--group_by`` keeps a group in
one fold), the same for a given seed on the same data whatever the model options; each (seed, fold) is a normal
``fit`` run trained on the other K-1 folds and validated on its fold, with the seed also seeding the weights, the
shuffling and the augmentation. The report, the out-of-fold predictions and the comparison are described in
:mod:`experiments.cv.report` and :mod:`experiments.cv.compare`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from experiments.terminal import OneLineParser


def _flag(value: str) -> bool:
    lowered = value.lower()
    if lowered not in ("true", "false", "1", "0", "yes", "no"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")
    return lowered in ("true", "1", "yes")


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """The cv's own options, and the rest (passed to every run's ``fit``).

    Raises:
        ValueError: an option out of range, or no experiment config.
    """
    parser = OneLineParser(prog="python -m experiments cv", add_help=True, allow_abbrev=False,
                           description=__doc__.split("\n\n")[0])
    parser.add_argument("--folds", type=int, default=5, help="K: folds per seed (default 5)")
    parser.add_argument("--seeds", type=int, default=1, help="N: seeds, each its own fold assignment (default 1)")
    parser.add_argument("--first_seed", type=int, default=0, help="the first seed (the seeds are consecutive)")
    parser.add_argument("--name",
                        help="the cv's folder under lightning_logs/<experiment>/cv/ (default: the config's stem)")
    parser.add_argument("--group_by", help="keep groups in one fold: a CSV column (--data.csv), else a regex on the "
                                           "path relative to --data.root (its first group, e.g. '^(\\w+)_')")
    parser.add_argument("--refit", type=_flag, default=False,
                        help="then train a final model on the whole pool for the runs' median best epoch count")
    parser.add_argument("--storage", help="Optuna storage URL shared by workers (default: SQLite in the cv folder)")
    parser.add_argument("--study", help="study name on --storage (default: cv-<experiment>-<name>)")
    parser.add_argument("--summary", action="store_true", help="write the report of the finished runs; train nothing")
    parser.add_argument("--compare", nargs=2, metavar=("DIR_A", "DIR_B"),
                        help="compare two finished cvs run for run (A - B); writes DIR_A/compare.json")
    parser.add_argument("--metric", help="with --compare: the metric compared (default: the cvs' monitor)")
    parser.add_argument("--heartbeat_interval", type=int, default=30, help=argparse.SUPPRESS)
    parser.add_argument("--grace_period", type=int, default=120,
                        help="seconds without a heartbeat after which a run of another machine counts as dead")
    args, rest = parser.parse_known_args(argv)
    if args.compare:
        return args, rest
    if args.folds < 2:
        raise ValueError(f"--folds {args.folds}: cross-validation needs at least 2 folds")
    if args.seeds < 1:
        raise ValueError(f"--seeds {args.seeds}: pass at least 1")
    if not any(token in ("-c", "--config") or token.startswith("--config=") for token in rest):
        raise ValueError("cv needs the experiment: -c experiments/NAME.yaml --folds 5 --seeds 2")
    for token in rest:
        if token.startswith("--seed_everything") or token.startswith("--cv_fold"):
            raise ValueError(f"{token.split('=')[0]}: cv sets it for every run; drop it (pass --first_seed instead)")
    return args, rest


def main(argv: list[str]) -> None:
    """``python -m experiments cv``: run (or continue) a cross-validation, report it, or compare two."""
    args, fit_args = parse(argv)
    if args.compare:
        from experiments.cv.compare import compare

        compare(Path(args.compare[0]), Path(args.compare[1]), args.metric)
        return
    from experiments.cv.study import CrossValidation

    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    cv = CrossValidation(fit_args, args.folds, seeds, args.name, args.group_by, args.storage, args.study,
                         args.heartbeat_interval, args.grace_period)
    if not args.summary:
        cv.run()
    report(cv, args.refit and not args.summary)
    sys.stdout.flush()


def report(cv: Any, refit: bool) -> None:
    """Write the report when every run has finished (and the refit, when asked); else say what is missing."""
    from experiments.cv.report import write_oof, write_report

    finished = cv.finished()
    missing = [p for p in cv.points() if p not in finished]
    if missing:
        running = {(t.params.get("seed"), t.params.get("fold")) for t in cv.trials(("RUNNING",))}
        elsewhere = [p for p in missing if p in running]
        print(f"cv {cv.name}: {len(finished)} of {len(cv.points())} runs finished"
              + (f"; {len(elsewhere)} running in other workers" if elsewhere else "")
              + ("; run the same command again to redo the failed ones" if len(elsewhere) < len(missing) else "")
              + ": no report yet", flush=True)
        if len(elsewhere) < len(missing):
            raise SystemExit(1)
        return
    runs = []
    for seed, fold in cv.points():
        result = finished[(seed, fold)].user_attrs.get("result") or {}
        runs.append({"seed": seed, "fold": fold, "run": result.get("run", ""), "best_epoch": result.get("best_epoch"),
                     "metrics": result.get("metrics", {}), "oof": result.get("oof")})
    header = {"experiment": cv.experiment, "name": cv.name, "folds": cv.folds, "seeds": cv.seeds,
              "group_by": cv.group_by, "mode": cv.mode, "fit_args": cv.fit_args, "study": cv.study_name,
              "storage": cv.url, "pool": {"size": len(cv.pool.sources), "fingerprint": cv.identity["pool"]},
              "assignments": {str(seed): _assignment_key(cv, seed) for seed in cv.seeds}}
    if refit:
        header["refit_run"] = cv.refit()
        header["refit_epochs"] = cv.study.user_attrs.get("refit_epochs")
    elif cv.study.user_attrs.get("refit_run"):
        header["refit_run"] = cv.study.user_attrs["refit_run"]
        header["refit_epochs"] = cv.study.user_attrs.get("refit_epochs")
    path, problems = write_oof(cv.folder, runs, len(cv.pool.sources))
    header["oof_complete"] = not problems
    write_report(cv.folder, header, runs, cv.monitor)
    for problem in problems:
        print(f"out-of-fold predictions: {problem}")
    if cv.pool.labels is not None and not problems:
        check_labels(cv, path)
    print(f"Report: {cv.folder}  (summary.json, scores.png, {path.name}; tensorboard --logdir {cv.folder})")
    if header.get("refit_run"):
        print(f"Refit: {header['refit_run']}/checkpoints/last.ckpt (predict, export, serve with --ckpt_path)")


def check_labels(cv: Any, oof: Path) -> None:
    """``label_issues.csv`` (and ``.png``) from the out-of-fold predictions; without cleanlab, what to install."""
    from experiments.analysis.labels import require_cleanlab, write_label_issues

    try:
        require_cleanlab()
    except ValueError as err:
        print(f"label checks skipped: {err}")
        return
    images_of = getattr(cv.data, "pool_images", None)
    path, flagged = write_label_issues(cv.folder, oof, images_of if callable(images_of) else None)
    print(f"Label checks: {flagged} of {len(cv.pool.sources)} labels flagged as likely wrong ({path.name}, "
          "most likely first)")


def _assignment_key(cv: Any, seed: int) -> str:
    from experiments.cv.study import fingerprint

    return fingerprint(cv.pool.sources, cv.assigned[seed].tolist())
