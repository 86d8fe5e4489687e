"""A cross-validation as an Optuna study of its (seed, fold) grid, on the sweep's storage.

Each grid point is one trial; the trials are queued when the cv starts, and every worker on the storage (this
process, another one, a SLURM array task, another machine on PostgreSQL) takes the next queued one. Started again
with the same command, a cv keeps its finished runs: a run whose process died is failed (by its process id on this
host, by Optuna's heartbeat elsewhere) and queued again, and only the points without a finished run are run. Two
workers that ever take the same point (a queue filled twice by workers started together) keep the lower-numbered
trial's run; the other is not run.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import socket
import time
import warnings
from pathlib import Path
from typing import Any

from datamodules.base.folds import Pool, assign_folds
from experiments.cv import runs as cv_runs
from experiments.files import write_atomically
from experiments.runs.folder import ExperimentFolder
from experiments.sweep.in_process import freeze_heap
from experiments.sweep.storage import open_storage, recover_dead_trials
from experiments.sweep.study import import_class, parse_fit, require_optuna
from experiments.terminal import condense_error

#: the options of a cv that make two runs of its command the same cross-validation
IDENTITY = ("folds", "seeds", "group_by", "pool", "fit_args")


def fingerprint(*parts: Any) -> str:
    """A short hash of JSON-able parts."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def data_module_of(config: Any) -> Any:
    """The experiment's data module, built from its config alone (no model, trainer or run folder)."""
    init_args = config.data.get("init_args")
    init_args = init_args.as_dict() if hasattr(init_args, "as_dict") else dict(init_args or {})
    return import_class(config.data.class_path)(**init_args)


class CrossValidation:
    """K folds x N seeds of one experiment: the pool and its folds, the study of its runs, the runs."""

    def __init__(self, fit_args: list[str], folds: int, seeds: list[int], name: str | None, group_by: str | None,
                 storage: str | None = None, study: str | None = None, heartbeat_interval: int = 30,
                 grace_period: int = 120) -> None:
        self.optuna = optuna = require_optuna()
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        self.fit_args, self.folds, self.seeds, self.group_by = list(fit_args), folds, list(seeds), group_by
        config = parse_fit(self.fit_args)
        devices = config.trainer.get("devices")
        if isinstance(devices, list) and len(devices) > 1 or str(devices).isdigit() and int(devices) > 1:
            raise ValueError(f"--trainer.devices {devices}: a cv run trains on one device; start one cv worker per "
                             "device on the same --storage instead (see the README, Cross-validation)")
        self.experiment = config.experiment
        task = import_class(config.model.class_path)
        init_args = config.model.get("init_args")
        init_args = init_args.as_dict() if hasattr(init_args, "as_dict") else dict(init_args or {})
        self.monitor, self.mode = task.monitor_of(init_args)
        files = config.get("config") or []
        self.name = name or (Path(str(files[0])).stem if files else self.experiment)
        root = config.trainer.get("default_root_dir") or os.getcwd()
        self.folder = ExperimentFolder.at(root, self.experiment).cross_validations / self.name
        self.pool = self._pool(config)
        self.assigned = {seed: assign_folds(self.pool, folds, seed) for seed in self.seeds}
        self.identity = {"folds": folds, "seeds": self.seeds, "group_by": group_by,
                         "fit_args": _resolved(self.fit_args),
                         "pool": fingerprint(self.pool.sources, _labels(self.pool))}
        self.storage, self.url, self.retry = open_storage(storage, self.folder / "cv.db", heartbeat_interval,
                                                          grace_period)
        self.study_name = study or f"cv-{self.experiment}-{self.name}"
        from optuna.samplers import GridSampler

        sampler = GridSampler({"seed": self.seeds, "fold": list(range(folds))}, seed=0)
        direction = "maximize" if self.mode == "max" else "minimize"
        self.study = optuna.create_study(study_name=self.study_name, storage=self.storage, direction=direction,
                                         sampler=sampler, load_if_exists=True)
        self._check_identity()
        self._write_folds()

    # -- the pool -------------------------------------------------------------------------------

    def _pool(self, config: Any) -> Pool:
        data = data_module_of(config)
        if not hasattr(data, "fold_pool"):
            raise ValueError(f"{type(data).__name__} cannot be cross-validated (no fold_pool); use a data module "
                             "built on datamodules.InMemoryDataModule")
        data.prepare_data()
        #: the data module the pool came from (the report shows pool images through its ``pool_images``)
        self.data = data
        return data.fold_pool(self.group_by)

    def _check_identity(self) -> None:
        """The study's recorded options, or these recorded when it is new; other options are one line."""
        recorded = self.study.user_attrs.get("identity")
        if recorded is None:
            self.study.set_user_attr("identity", self.identity)
            return
        differ = [k for k in IDENTITY if recorded.get(k) != self.identity.get(k)]
        if differ:
            what = ", ".join(f"{k} {recorded.get(k)!r} -> {self.identity.get(k)!r}" if k != "pool" else "the data"
                             for k in differ)
            raise ValueError(f"--name {self.name}: this cv was started with other options ({what}); pass another "
                             "--name for a new cross-validation, or the same options to continue it")

    def _write_folds(self) -> None:
        """``folds.csv``: every pool sample's fold under each seed (source, seed, fold, target)."""
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(["source", "seed", "fold", "target"])
        labels = _labels(self.pool)
        for seed in self.seeds:
            for source, fold, label in zip(self.pool.sources, self.assigned[seed].tolist(), labels, strict=True):
                writer.writerow([source, seed, fold, "" if label is None else label])
        self.folder.mkdir(parents=True, exist_ok=True)
        write_atomically(self.folder / "folds.csv", text.getvalue())

    # -- the grid -------------------------------------------------------------------------------

    def points(self) -> list[tuple[int, int]]:
        """Every (seed, fold), seed-major: the order of the report's values."""
        return [(seed, fold) for seed in self.seeds for fold in range(self.folds)]

    def trials(self, states: tuple[str, ...]) -> list[Any]:
        """The study's run trials in these states (trials not run as duplicates left out)."""
        return [t for t in self.study.get_trials(deepcopy=False) if t.state.name in states
                and not str(t.user_attrs.get("reason", "")).startswith("not run:")]

    def finished(self) -> dict[tuple[int, int], Any]:
        """The completed trial of each point (the lowest-numbered where a point has two)."""
        done: dict[tuple[int, int], Any] = {}
        for t in sorted(self.trials(("COMPLETE",)), key=lambda t: t.number):
            done.setdefault((t.params["seed"], t.params["fold"]), t)
        return done

    def queue_missing(self) -> None:
        """Queue every point with no finished, running or queued trial (new, failed or killed)."""
        taken = {(t.params.get("seed"), t.params.get("fold")) for t in self.trials(("COMPLETE", "RUNNING"))}
        for t in self.study.get_trials(deepcopy=False):
            if t.state.name == "WAITING":
                fixed = t.system_attrs.get("fixed_params", {})
                taken.add((fixed.get("seed"), fixed.get("fold")))
        for seed, fold in self.points():
            if (seed, fold) not in taken:
                self.study.enqueue_trial({"seed": seed, "fold": fold})

    def _claimed_elsewhere(self, trial: Any, point: tuple[int, int]) -> bool:
        """Whether another trial already has (or is running, with a lower number) this point."""
        for _ in range(40):  # a trial numbered before this one may not have written its point yet: wait for it
            pending = False
            for t in self.trials(("COMPLETE", "RUNNING")):
                if t.number == trial.number:
                    continue
                same = (t.params.get("seed"), t.params.get("fold")) == point
                if same and (t.state.name == "COMPLETE" or t.number < trial.number):
                    return True
                pending |= t.state.name == "RUNNING" and t.number < trial.number and "fold" not in t.params
            if not pending:
                return False
            time.sleep(0.25)
        return False

    def objective(self, trial: Any) -> float:
        """Run one (seed, fold) point and return its monitored value at the best epoch."""
        seed = trial.suggest_categorical("seed", self.seeds)
        fold = trial.suggest_categorical("fold", list(range(self.folds)))
        if self._claimed_elsewhere(trial, (seed, fold)):
            trial.set_user_attr("reason", "not run: another worker has this run")
            taken = {(t.params.get("seed"), t.params.get("fold")) for t in self.trials(("COMPLETE", "RUNNING"))}
            if all(p in taken for p in self.points()):
                self.study.stop()
            raise _NotRun
        trial.set_user_attr("pid", os.getpid())
        trial.set_user_attr("host", socket.gethostname())
        print(f"seed {seed} fold {fold}: training", flush=True)
        try:
            result = cv_runs.run_fold(self.fit_args, self.name, self.folds, seed, fold, self.group_by,
                                      self.monitor, self.mode)
        except Exception as err:
            trial.set_user_attr("reason", f"{type(err).__name__}: {condense_error(str(err))}"[:300])
            print(f"seed {seed} fold {fold}: failed: {trial.user_attrs['reason']}", flush=True)
            raise
        # one write to the storage (each is a transaction: on SQLite a sync to disk)
        trial.set_user_attr("result", {"run": result.run, "metrics": result.metrics, "best_epoch": result.best_epoch,
                                       "oof": result.oof})
        print(f"seed {seed} fold {fold}: {self.monitor} = {result.value:.6g} (epoch {result.best_epoch})  "
              f"{os.path.relpath(result.run) if result.run else ''}", flush=True)
        return result.value

    def run(self) -> None:
        """Run the grid's unfinished points (with every other worker on the storage)."""
        recover_dead_trials(self.study, self.retry)
        self.queue_missing()
        done = len(self.finished())
        print(f"cv {self.name} ({self.url}): {done} of {len(self.points())} runs done ({self.folds} folds x "
              f"{len(self.seeds)} seeds), {'maximizing' if self.mode == 'max' else 'minimizing'} {self.monitor}",
              flush=True)
        if done < len(self.points()):
            # memory is released after each run by the run itself (experiments.sweep.in_process.quiet_lightning)
            freeze_heap()
            self.study.optimize(self.objective, n_trials=None, catch=(Exception,), callbacks=[self._stop_when_done])

    def _stop_when_done(self, study: Any, trial: Any) -> None:
        if len(self.finished()) == len(self.points()) or not any(
                t.state.name == "WAITING" for t in study.get_trials(deepcopy=False)):
            study.stop()

    # -- the refit ------------------------------------------------------------------------------

    def refit(self) -> str:
        """Train the final model on the whole pool for the median of the runs' epoch counts (recorded once).

        Returns:
            Its run folder.
        """
        recorded = self.study.user_attrs.get("refit_run")
        if recorded:
            return str(recorded)
        epochs = [t.user_attrs["result"]["best_epoch"] + 1 for t in self.finished().values()]
        median = sorted(epochs)[len(epochs) // 2] if len(epochs) % 2 else round(
            sum(sorted(epochs)[len(epochs) // 2 - 1:len(epochs) // 2 + 1]) / 2)
        print(f"refit: the whole pool ({len(self.pool.sources)} samples), {median} epochs (the runs' median "
              "best epoch count), no validation", flush=True)
        run = cv_runs.refit(self.fit_args, self.name, self.folds, self.seeds[0], max(1, median), self.group_by)
        self.study.set_user_attr("refit_run", run)
        self.study.set_user_attr("refit_epochs", median)
        return run


class _NotRun(Exception):
    """A point another worker already has."""


def _resolved(args: list[str]) -> list[str]:
    """``args`` with config paths resolved, so ``-c x.yaml`` and ``-c ./x.yaml`` are the same cv."""
    out = list(args)
    for i, token in enumerate(out):
        if token in ("-c", "--config") and i + 1 < len(out):
            out[i + 1] = str(Path(out[i + 1]).resolve())
        elif token.startswith("--config="):
            out[i] = "--config=" + str(Path(token.split("=", 1)[1]).resolve())
    return out


def _labels(pool: Pool) -> list[int | None]:
    return pool.labels.tolist() if pool.labels is not None else [None] * len(pool.sources)


def is_finite(value: Any) -> bool:
    """Whether ``value`` is a finite number."""
    return isinstance(value, (int, float)) and math.isfinite(value)
