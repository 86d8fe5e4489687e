"""What a run's checkpoints say: which one is ``best`` or ``last``, whose experiment wrote it, what it monitored.

Lightning resolves ``ckpt_path="best"|"last"`` only within the current process's run. An
experiment framework is used across processes (train today, test tomorrow), so here:

- ``last``: the newest run of the experiment that holds a ``last.ckpt`` (to resume it).
- ``best``: the run with the best monitored value (in the direction its summary records) among the
  experiment's finished runs (``finished`` or ``stopped early``); sweep trials are left out unless a
  study is named, and then only its trials count. With no finished run, every run with a best
  checkpoint counts. Only runs that monitor the same metric as the newest of them are compared; a
  tie goes to the newer run. A short try-out or a sweep's last trial no longer wins by being newest.

Both look only at runs trained on the data the command is configured with (``--data.root`` or
``--data.csv``, :mod:`experiments.runs.trained_on`); runs of the same experiment on other data are another
model, and a command on data no run was trained on is refused in one line naming the newest run and its data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from experiments.runs import trained_on
from experiments.runs.folder import ExperimentFolder, RunFolder, epoch_in_name
from experiments.runs.summary import read_summary

#: checkpoint key naming the experiment that wrote it (a top-level key, read without knowing any callback)
EXPERIMENT_KEY = "litexp_experiment"


def read_metadata(path: str | Path) -> dict[str, Any] | None:
    """A checkpoint with its tensors memory-mapped (only the metadata is read); None when unreadable."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # any reason at all: the callers fall back to other evidence or say so
        return None
    return checkpoint if isinstance(checkpoint, dict) else None


def monitored_state(checkpoint: dict[str, Any]) -> dict[str, Any] | None:
    """The state of the ModelCheckpoint that monitors a metric (``monitor``, ``best_model_path``,
    ``best_model_score``, ``mode``), as Lightning saves it under the callback's state key.
    """
    for key, state in (checkpoint.get("callbacks") or {}).items():
        if key.startswith("ModelCheckpoint") and isinstance(state, dict) and state.get("monitor"):
            return state
    return None


def checkpoint_in(run: RunFolder, which: str) -> Path | None:
    """``last.ckpt`` or the best checkpoint of one run, if present.

    The best one is the checkpoint the run's best-checkpoint callback recorded (its
    ``best_model_path`` in ``last.ckpt``; only the file name is used, so a moved run folder still
    resolves). Without that record, the ``best-*.ckpt`` with the highest epoch in its name.
    """
    last = run.last_checkpoint
    if which == "last":
        return last if last.is_file() else None
    metadata = read_metadata(last) if last.is_file() else None
    state = monitored_state(metadata) if metadata else None
    recorded = Path(state["best_model_path"]).name if state and state.get("best_model_path") else None
    if recorded is not None and (run.checkpoints / recorded).is_file():
        return run.checkpoints / recorded
    candidates = run.best_checkpoints()
    return candidates[-1] if candidates else None


FINISHED = ("finished", "stopped early")


def resolve(experiment: ExperimentFolder, which: str, study: str | None = None,
            data: dict[str, str | None] | None = None) -> tuple[RunFolder, Path, str]:
    """(run, checkpoint, a line saying which run was taken and why) among the runs trained on ``data`` (all
    runs when None: a bundled data set).

    Raises:
        ValueError: no run qualifies (one line: what to do instead).
    """
    if which == "last":
        others = None
        for run in reversed(experiment.runs()):
            path = checkpoint_in(run, "last")
            if path is None:
                continue
            if data is not None and not trained_on.same_data(data, trained_on.recorded_data(run)):
                others = others or run
                continue
            return run, path, f"--ckpt_path last: {run.path.name}, the newest run with a last.ckpt"
        if others is not None:
            raise _other_data(which, others, data)
        raise ValueError(f"--ckpt_path last: no earlier run with a last checkpoint under {experiment.path}; "
                         "run `fit` first, or pass --ckpt_path PATH to a .ckpt file")
    return _best(experiment, study, data)


def _other_data(which: str, run: RunFolder, data: dict[str, str | None]) -> ValueError:
    return ValueError(f"--ckpt_path {which}: no run was trained on {trained_on.describe(data)} (the newest, "
                      f"{run.path}, was trained on {trained_on.describe(trained_on.recorded_data(run))}); fit on "
                      "this data first, or pass --ckpt_path PATH to use that run's checkpoint here")


def _best(experiment: ExperimentFolder, study: str | None,
          data: dict[str, str | None] | None) -> tuple[RunFolder, Path, str]:
    pool, others = [], None
    for run in experiment.runs():
        path = checkpoint_in(run, "best")
        if path is None:
            continue
        if data is not None and not trained_on.same_data(data, trained_on.recorded_data(run)):
            others = run
            continue
        summary = read_summary(run)
        if (summary.get("study") == study) if study is not None else ("study" not in summary):
            pool.append((run, path, summary, _best_value(run, summary)))
    if not pool and others is not None:
        raise _other_data("best", others, data)
    if not pool:
        among = f"trials of study '{study}'" if study is not None else "runs (sweep trials are left out)"
        raise ValueError(f"--ckpt_path best: no {among} with a best checkpoint under {experiment.path}; run "
                         "`fit` first, name a study with --study, or pass --ckpt_path PATH to a .ckpt file")
    finished = [entry for entry in pool if entry[2].get("state") in FINISHED]
    candidates = finished or pool
    monitor = next((value[0] for *_, value in reversed(candidates) if value is not None), None)
    comparable = [entry for entry in candidates if entry[3] is not None and entry[3][0] == monitor]
    if not comparable:  # nothing records a value: the newest run's best checkpoint
        run, path, *_ = candidates[-1]
        return run, path, f"--ckpt_path best: {run.path.name} (no run records a best value; the newest)"
    sign = -1.0 if comparable[-1][3][2] == "max" else 1.0
    run, path, _, (metric, value, _) = min(reversed(comparable), key=lambda entry: sign * entry[3][1])
    kind = "finished runs" if finished else "runs (none finished)"
    trials = f" of study '{study}'" if study is not None else ""
    left_out = "" if study is not None else "; sweep trials left out (--study NAME picks among them)"
    return run, path, (f"--ckpt_path best: {run.path.name}, {metric} {value:.6g}, the best of "
                       f"{len(comparable)} {kind}{trials}{left_out}")


def _best_value(run: RunFolder, summary: dict[str, Any]) -> tuple[str, float, str] | None:
    """(monitor, best value, mode) from the summary, else from ``last.ckpt``; None when neither says."""
    best, mode = summary.get("best"), summary.get("mode")
    if not (isinstance(best, dict) and isinstance(best.get("value"), (int, float)) and mode in ("min", "max")):
        recorded = best_recorded(run.last_checkpoint)
        best, mode = recorded.get("best"), recorded.get("mode")
        if not (isinstance(best, dict) and mode in ("min", "max")):
            return None
    metric = best.get("metric") or summary.get("monitor")
    value = float(best["value"])
    return (str(metric), value, mode) if value == value else None  # a NaN best never wins


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint at ``path``, tensors memory-mapped (not read).

    Raises:
        ValueError: the file cannot be read, or is not a Lightning checkpoint (one line each).
    """
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as err:
        raise ValueError(f"--ckpt_path {path} cannot be read ({err.strerror or err}); pass a .ckpt file written by "
                         "`fit`") from None
    if head[:2] != b"PK":  # torch.save writes a zip archive (and fit writes nothing else)
        raise ValueError(f"--ckpt_path {path} is not a checkpoint (not the zip archive torch.save writes); pass a "
                         ".ckpt file written by `fit`")
    try:
        # mmap: only the metadata is read here; LightningCLI and the Trainer load the tensors later
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:
        raise ValueError(
            f"--ckpt_path {path} cannot be read as a checkpoint ({type(err).__name__}: {err}); "
            "pass a .ckpt file written by `fit`"
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"--ckpt_path {path} is not a Lightning checkpoint (no state_dict); pass a .ckpt from `fit`")
    return checkpoint


def check_experiment(path: Path, experiment: str, net_class_path: str | None) -> dict[str, Any]:
    """The checkpoint at ``path`` (tensors memory-mapped, not read); ValueError when it is not a
    checkpoint, or was written by another experiment or net.
    """
    checkpoint = read_checkpoint(path)
    owner = checkpoint.get(EXPERIMENT_KEY)
    if owner is not None and owner != experiment:
        raise ValueError(
            f"--ckpt_path {path} belongs to experiment '{owner}', not '{experiment}'; "
            f"use -c experiments/{owner}.yaml with it, or a checkpoint of '{experiment}'"
        )
    saved_net = (checkpoint.get("hyper_parameters") or {}).get("net")
    saved_class = saved_net.get("class_path") if isinstance(saved_net, dict) else None
    if saved_class and net_class_path and saved_class != net_class_path:
        raise ValueError(
            f"--ckpt_path {path} holds a {saved_class.rsplit('.', 1)[-1]} but the config builds a "
            f"{net_class_path.rsplit('.', 1)[-1]}; pass the config it was trained with"
        )
    return checkpoint


def best_recorded(path: Path) -> dict[str, Any]:
    """Epochs and best value recorded in a ``last.ckpt`` (for a run that died before its summary)."""
    checkpoint = read_metadata(path) if path.is_file() else None
    if checkpoint is None:
        return {}
    found: dict[str, Any] = {"epochs": int(checkpoint.get("epoch", -1)) + 1}
    state = monitored_state(checkpoint)
    if state is not None and state.get("best_model_score") is not None:
        epoch = epoch_in_name(Path(state.get("best_model_path") or ""))[0]
        found["best"] = {"metric": state["monitor"], "value": float(state["best_model_score"]),
                         "epoch": epoch if epoch >= 0 else None}
        if state.get("mode") in ("min", "max"):
            found["mode"] = state["mode"]
    return found
