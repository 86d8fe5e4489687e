"""What a run's checkpoints say: which one is ``best`` or ``last``, whose experiment wrote it, what it monitored.

Lightning resolves ``ckpt_path="best"|"last"`` only within the current process's run. An
experiment framework is used across processes (train today, test tomorrow), so ``best``/``last``
here mean: the newest run of the same experiment that holds such a checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from experiments.runs.folder import ExperimentFolder, RunFolder, epoch_in_name

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
    ``best_model_score``, ``mode``), as Lightning saves it under the callback's state key."""
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


def resolve(experiment: ExperimentFolder, which: str) -> tuple[RunFolder, Path]:
    """(run, path) of the newest run holding a ``which`` checkpoint; ValueError if none."""
    for run in reversed(experiment.runs()):
        path = checkpoint_in(run, which)
        if path is not None:
            return run, path
    raise ValueError(
        f"--ckpt_path {which}: no earlier run with a {which} checkpoint under {experiment.path}; "
        "run `fit` first, or pass --ckpt_path PATH to a .ckpt file"
    )


def check_experiment(path: Path, experiment: str, net_class_path: str | None) -> dict[str, Any]:
    """The checkpoint at ``path`` (tensors memory-mapped, not read); ValueError when it is not a
    checkpoint, or was written by another experiment or net."""
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
