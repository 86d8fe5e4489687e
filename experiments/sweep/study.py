"""One sweep: an Optuna study whose trials are ``fit`` runs in this process (see :mod:`experiments.sweep.command`)."""

from __future__ import annotations

import argparse
import math
import os
import socket
import warnings
from pathlib import Path
from typing import Any

import yaml
from typing_extensions import override

from experiments.cli import ExperimentCLI, name_experiment
from experiments.files import write_atomically
from experiments.runs.folder import ExperimentFolder
from experiments.sweep import space as sweep_file
from experiments.sweep.in_process import QUIET_RUN, best_value, freeze_heap, given, quiet_args, quiet_lightning
from experiments.sweep.pruning import TrialPruning
from experiments.sweep.storage import open_storage, recover_dead_trials
from experiments.terminal import condense_error, render_table

EXTRA_HINT = 'pip install "optuna>=4.9,<6" (or: pip install -e ".[results]" in the project)'
def require_optuna() -> Any:
    """The ``optuna`` package.

    Raises:
        ValueError: it is not installed (the message says which extra installs it).
    """
    try:
        import optuna
    except ImportError:
        raise ValueError(f"sweep needs optuna, which is not installed: {EXTRA_HINT}") from None
    return optuna


class _ParseOnly(ExperimentCLI):
    """The experiment's parser and config, nothing instantiated: to check options before any trial."""

    @override
    def before_instantiate_classes(self) -> None:
        pass

    @override
    def instantiate_classes(self) -> None:
        pass


def parse_fit(fit_args: list[str]) -> Any:
    """The experiment's config for ``fit`` with these options (named, nothing instantiated, no run folder)."""
    with quiet_lightning():  # parsing seeds the generators, and says so
        config = _ParseOnly(args=fit_args, run=False).config
    name_experiment(config)
    return config


def import_class(class_path: str) -> type:
    """The class a dotted ``module.Class`` path names."""
    module, _, name = class_path.rpartition(".")
    return getattr(__import__(module, fromlist=[name]), name)


def check_options(fit_args: list[str], space: sweep_file.SweepFile) -> tuple[Any, dict[str, Any]]:
    """Parse the experiment's config once per value that matters (each range's ends, every choice), so
    an unknown option or a value of the wrong type is one line naming it before any trial runs.
    """
    cli = _ParseOnly(args=fit_args, run=False)
    config = cli.config
    name_experiment(config)
    devices = config.trainer.get("devices")
    if isinstance(devices, list) and len(devices) > 1 or str(devices).isdigit() and int(devices) > 1:
        raise ValueError(f"--trainer.devices {devices}: a sweep trial runs on one device; start one sweep worker "
                         "per device on the same study instead (see the README, Sweeps)")
    for parameter in space.parameters:
        for value in parameter.samples():
            token = sweep_file.as_cli_value(value)
            try:
                cli.parser.parse_args([*fit_args, f"--{parameter.name}", token])
            except (argparse.ArgumentError, ValueError, TypeError) as err:
                raise ValueError(f"--sweep {space.path}: {parameter.name} = {token} is not accepted by the "
                                 f"experiment's options ({condense_error(str(err))})") from None
            except SystemExit:
                raise ValueError(f"--sweep {space.path}: {parameter.name} is not an option of the experiment") from None
    for entry in space.enqueue:
        tokens = [t for k, v in entry.items() for t in (f"--{k}", sweep_file.as_cli_value(v))]
        try:
            cli.parser.parse_args([*fit_args, *tokens])
        except (argparse.ArgumentError, ValueError, TypeError) as err:
            raise ValueError(f"--sweep {space.path}: enqueue {entry}: {condense_error(str(err))}") from None
    return config, {"experiment": config.experiment, "root": config.trainer.get("default_root_dir") or os.getcwd()}


class Sweep:
    """One Optuna study of fit runs: created or resumed on its storage, run trial by trial, summarised."""
    def __init__(self, args: argparse.Namespace, fit_args: list[str]) -> None:
        self.optuna = optuna = require_optuna()
        optuna.logging.set_verbosity(optuna.logging.ERROR)  # this module prints one line per trial itself
        # the heartbeat and its retry callback are marked experimental by Optuna; they are what lets a
        # study shared between machines recover the trials of a machine that died
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        self.space = sweep_file.read(args.sweep)
        self.n_trials = args.n_trials or self.space.n_trials
        self.fit_args = list(fit_args)
        config, where = check_options(self.fit_args, self.space)
        self.experiment = where["experiment"]
        task = import_class(config.model.class_path)
        init_args = config.model.get("init_args")
        init_args = init_args.as_dict() if hasattr(init_args, "as_dict") else dict(init_args or {})
        self.monitor, self.mode = task.monitor_of(init_args)
        self.study_name = args.study or Path(args.sweep).stem
        self.sweeps_dir = ExperimentFolder.at(where["root"], self.experiment).sweeps
        self.storage, self.url, self.retry = open_storage(
            args.storage, self.sweeps_dir / f"{self.study_name}.db", args.heartbeat_interval, args.grace_period)
        direction = "maximize" if self.mode == "max" else "minimize"
        try:
            self.study = optuna.create_study(
                study_name=self.study_name, storage=self.storage, direction=direction, load_if_exists=True,
                sampler=sweep_file.make_sampler(self.space.sampler, self.space.parameters),
                pruner=sweep_file.make_pruner(self.space.pruner),
            )
        except ValueError as err:
            raise ValueError(f"--study {self.study_name}: {err}") from None
        if self.study.direction.name.lower() != direction:
            created = self.study.direction.name.lower()
            raise ValueError(f"--study {self.study_name} in {self.url} was created to {created}, "
                             f"but {self.monitor} is to {direction}; pass another --study")
        self.failures_here = 0

    # -- state ----------------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """How many of the study's trials are in each state."""
        states = [t.state.name for t in self.study.get_trials(deepcopy=False)]
        return {name: states.count(name) for name in ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")}

    def done(self) -> int:
        """Trials that count towards ``n_trials``: completed or pruned."""
        c = self.counts()
        return c["COMPLETE"] + c["PRUNED"]

    def recover(self) -> None:
        """Mark failed (and queue again, once) the running trials whose process on this host is gone."""
        recover_dead_trials(self.study, self.retry)

    # -- one trial ------------------------------------------------------------------------------

    def trial_args(self, values: dict[str, Any]) -> list[str]:
        """The ``fit`` arguments of a trial with these parameter values."""
        args = quiet_args(["fit", *self.fit_args])
        for name, value in values.items():
            args += [f"--{name}", sweep_file.as_cli_value(value)]
        return args

    def objective(self, trial: Any) -> float:
        """Run one trial's fit and return its best monitored value."""
        from optuna.trial import TrialState

        others = [t for t in self.study.get_trials(deepcopy=False) if t.number != trial.number]
        busy = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING) for t in others)
        if busy >= self.n_trials:  # another worker took the last one while this one was asking
            trial.set_user_attr("reason", "not run: the study already had n_trials finished or running")
            self.study.stop()
            raise _NotNeeded
        trial.set_user_attr("pid", os.getpid())
        trial.set_user_attr("host", socket.gethostname())
        pruning = TrialPruning(trial, self.monitor)
        try:
            with quiet_lightning():
                values = {p.name: p.suggest(trial) for p in self.space.parameters}
                cli = ExperimentCLI(args=self.trial_args(values), extra_callbacks=[pruning], report=False,
                                    run_tags={"study": self.study_name, "trial": trial.number})
                if cli.run_folder is not None:
                    trial.set_user_attr("run", str(cli.run_folder.path))
                value = best_value(cli, self.monitor)
                del cli
        except Exception as err:
            trial.set_user_attr("reason", f"{type(err).__name__}: {condense_error(str(err))}"[:300])
            raise
        if pruning.pruned_at is not None:
            raise self.optuna.TrialPruned(f"pruned at epoch {pruning.pruned_at}")
        if value is None or not math.isfinite(value):
            raise ValueError(f"the run recorded no finite {self.monitor}; is validation running?")
        return value

    def report(self, study: Any, trial: Any) -> None:
        """Print one line for a finished trial."""
        if trial.user_attrs.get("reason", "").startswith("not run:"):
            return
        state = trial.state.name.lower()
        value = f" {self.monitor}={trial.value:.6g}" if trial.value is not None else ""
        try:
            best = study.best_trial
            best_text = f"; best {best.value:.6g} (trial {best.number})"
        except ValueError:
            best_text = ""
        run = trial.user_attrs.get("run", "")
        reason = f": {trial.user_attrs['reason']}" if state == "fail" and trial.user_attrs.get("reason") else ""
        print(f"trial {trial.number}: {state}{value}{best_text}{reason}  {run}".rstrip(), flush=True)
        if state == "fail":
            self.failures_here += 1
            if self.failures_here > self.n_trials:
                print(f"stopping: {self.failures_here} trials failed in this sweep; see their reasons above",
                      flush=True)
                study.stop()

    # -- the whole sweep ------------------------------------------------------------------------

    def run(self) -> None:
        """Run trials until ``n_trials`` of them are done, across every worker on the storage."""
        from optuna.study import MaxTrialsCallback
        from optuna.trial import TrialState

        if not self.study.trials:
            for entry in self.space.enqueue:
                self.study.enqueue_trial(entry, skip_if_exists=True)
        self.recover()
        remaining = self.n_trials - self.done()
        print(f"study {self.study_name} ({self.url}): {self.done()} of {self.n_trials} trials done, "
              f"{'maximizing' if self.mode == 'max' else 'minimizing'} {self.monitor}", flush=True)
        if remaining > 0:
            freeze_heap()  # each trial ends with a collection (quiet_lightning): over new objects only
            self.study.optimize(
                self.objective, n_trials=None, catch=(Exception,),
                callbacks=[MaxTrialsCallback(self.n_trials, states=(TrialState.COMPLETE, TrialState.PRUNED)),
                           self.report],
            )
        self.summary()

    def summary(self) -> None:
        """Print a table of the study's trials, best first."""
        trials = [t for t in self.study.get_trials(deepcopy=False)
                  if not t.user_attrs.get("reason", "").startswith("not run:")]
        names = [p.name for p in self.space.parameters]
        short = {n: n.split(".")[-1] for n in names}
        header = ["trial", "state", self.monitor, *[short[n] for n in names], "run"]
        rows = []
        for t in trials:
            value = f"{t.value:.6g}" if t.value is not None else ""
            params = [str(t.params.get(n, "")) for n in names]
            run = t.user_attrs.get("run", "")
            run = os.path.relpath(run) if run else ""
            rows.append([str(t.number), t.state.name.lower(), value, *params, run])
        if rows:
            print(render_table(header, rows))
        completed = [t for t in trials if t.state.name == "COMPLETE"]
        if len(completed) >= 4 and len(names) >= 2:
            try:
                importances = self.optuna.importance.get_param_importances(self.study)
                print("parameter importance: " + ", ".join(f"{short[k]} {v:.2f}" for k, v in importances.items()))
            except (RuntimeError, ValueError):
                pass
        if not completed:
            print("no completed trial yet: no best config")
            return
        best = self.study.best_trial
        path = self.write_best(best)
        if path is not None:
            print(f"best: trial {best.number}, {self.monitor} = {best.value:.6g}; config {path} "
                  f"(python -m experiments fit -c {path})")

    def write_best(self, best: Any) -> Path | None:
        """The best trial's complete config (its run's config.yaml), which ``fit -c`` runs as it is."""
        run = best.user_attrs.get("run")
        source = Path(run) / "config.yaml" if run else None
        if source is None or not source.is_file():
            return None
        config = yaml.safe_load(source.read_text())
        trainer = config.get("trainer") or {}
        for option in QUIET_RUN:  # what the sweep added for its own output, not part of the result
            if not given(option, self.fit_args):
                trainer.pop(option.removeprefix("--trainer."), None)
        config.pop("ckpt_path", None)
        self.sweeps_dir.mkdir(parents=True, exist_ok=True)
        path = self.sweeps_dir / f"{self.study_name}-best.yaml"
        params = ", ".join(f"{k}={v}" for k, v in best.params.items())
        text = (f"# best trial of study {self.study_name}: trial {best.number}, {self.monitor} = {best.value:.6g}\n"
                f"# {params}\n# run: {run}\n") + yaml.safe_dump(config, sort_keys=False)
        write_atomically(path, text)
        return path


class _NotNeeded(Exception):
    """A trial asked for after the study reached n_trials (another worker took the last one)."""


