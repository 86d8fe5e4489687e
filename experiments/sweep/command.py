"""``python -m experiments sweep -c X.yaml --sweep experiments/sweeps/X.yaml [--n_trials N] [--study NAME]
[--storage URL] [--summary] [any fit option]``: a resumable Optuna study over any config option.

Each trial is a normal ``fit`` run (its own ``version_N``, checkpoints, TensorBoard logs, summary with the
study and trial number), run in this process: a trial costs no interpreter or import start-up. The
objective is the experiment's monitored metric at its best checkpoint, in the task's direction.

The study lives in an Optuna storage: by default ``lightning_logs/<experiment>/sweeps/<study>.db``
(SQLite); any other URL (``postgresql://...``) lets processes on several machines share it. Started
again after a crash, the sweep continues the study: finished trials stay, a trial whose process is
gone is marked failed and retried once (at once when it ran on this host; by Optuna's heartbeat,
after ``--grace_period`` seconds, when it ran elsewhere), and trials are run until ``n_trials`` have
completed or been pruned.
"""

from __future__ import annotations

import argparse
import sys

from experiments.sweep.study import Sweep
from experiments.terminal import OneLineParser


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """The sweep's own options, and the rest (passed to every trial's ``fit``)."""
    parser = OneLineParser(prog="python -m experiments sweep", add_help=True, allow_abbrev=False,
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweep", required=True, help="the sweep file (search space, n_trials, sampler, pruner)")
    parser.add_argument("--n_trials", type=int, help="completed or pruned trials to reach (default: the file's)")
    parser.add_argument("--study", help="study name (default: the sweep file's stem)")
    parser.add_argument("--storage",
                        help="Optuna storage URL (default: SQLite under lightning_logs/<experiment>/sweeps)")
    parser.add_argument("--summary", action="store_true", help="print the study's table and best config; run nothing")
    parser.add_argument("--heartbeat_interval", type=int, default=30, help=argparse.SUPPRESS)
    parser.add_argument("--grace_period", type=int, default=120,
                        help="seconds without a heartbeat after which a trial of another machine counts as dead")
    args, rest = parser.parse_known_args(argv)
    if args.n_trials is not None and args.n_trials < 1:
        raise ValueError(f"--n_trials must be >= 1, got {args.n_trials}")
    if not any(token in ("-c", "--config") or token.startswith("--config=") for token in rest):
        raise ValueError("sweep needs the experiment: -c experiments/NAME.yaml --sweep experiments/sweeps/NAME.yaml")
    return args, rest


def main(argv: list[str]) -> None:
    """``python -m experiments sweep``: run (or resume) a study, or print its summary."""
    args, fit_args = parse(argv)
    sweep = Sweep(args, fit_args)
    if args.summary:
        sweep.summary()
        return
    sweep.run()
    sys.stdout.flush()
