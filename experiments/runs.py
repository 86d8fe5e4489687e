"""Run folders: ``<root>/lightning_logs/<experiment>/version_N/`` and the checkpoints inside.

Lightning resolves ``ckpt_path="best"|"last"`` only within the current process's run. An
experiment framework is used across processes (train today, test tomorrow), so ``best``/``last``
here mean: the newest run of the same experiment that holds such a checkpoint.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import torch

from experiments.callbacks import EXPERIMENT_KEY

BEST_PREFIX = "best-"
LAST_NAME = "last.ckpt"
_VERSION = re.compile(r"^version_(\d+)$")
_EPOCH = re.compile(r"epoch(\d+)")


def experiment_dir(root: str | os.PathLike, experiment: str) -> Path:
    return Path(root) / "lightning_logs" / experiment


def versions(exp_dir: Path) -> list[int]:
    """Version numbers present under ``exp_dir``, ascending."""
    if not exp_dir.is_dir():
        return []
    found = (_VERSION.match(p.name) for p in exp_dir.iterdir() if p.is_dir())
    return sorted(int(m.group(1)) for m in found if m)


def checkpoint_in(run_dir: Path, which: str) -> Path | None:
    """``last.ckpt`` or the best checkpoint of one run, if present.

    The best one is the checkpoint the run's best-checkpoint callback recorded (its
    ``best_model_path`` in ``last.ckpt``; only the file name is used, so a moved run folder still
    resolves). Without that record, the ``best-*.ckpt`` with the highest epoch in its name.
    """
    ckpt_dir = run_dir / "checkpoints"
    last = ckpt_dir / LAST_NAME
    if which == "last":
        return last if last.is_file() else None
    recorded = recorded_best(last) if last.is_file() else None
    if recorded is not None and (ckpt_dir / recorded).is_file():
        return ckpt_dir / recorded
    candidates = sorted(ckpt_dir.glob(f"{BEST_PREFIX}*.ckpt"), key=epoch_in_name)
    return candidates[-1] if candidates else None


def recorded_best(last: Path) -> str | None:
    """File name of the best checkpoint that the monitoring ModelCheckpoint recorded in ``last``."""
    try:
        # mmap: only the metadata is read; the tensors stay on disk
        checkpoint = torch.load(last, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # unreadable: fall back to the file names
        return None
    for key, state in (checkpoint.get("callbacks") or {}).items():
        if key.startswith("ModelCheckpoint") and isinstance(state, dict) and state.get("monitor"):
            path = state.get("best_model_path")
            if path:
                return Path(path).name
    return None


def epoch_in_name(path: Path) -> tuple[int, str]:
    found = _EPOCH.search(path.name)
    return (int(found.group(1)) if found else -1, path.name)


def resolve_checkpoint(exp_dir: Path, which: str) -> tuple[int, Path]:
    """(version, path) of the newest run holding a ``which`` checkpoint; ValueError if none."""
    for version in reversed(versions(exp_dir)):
        path = checkpoint_in(exp_dir / f"version_{version}", which)
        if path is not None:
            return version, path
    raise ValueError(
        f"--ckpt_path {which}: no earlier run with a {which} checkpoint under {exp_dir}; "
        "run `fit` first, or pass --ckpt_path PATH to a .ckpt file"
    )


def version_holding(exp_dir: Path, checkpoint: Path) -> int | None:
    """N when ``checkpoint`` lies in ``exp_dir/version_N/`` (its ``checkpoints/`` folder or the run folder)."""
    path = checkpoint.resolve()
    for folder in (path.parent, path.parent.parent):
        found = _VERSION.match(folder.name)
        if found and folder.parent == exp_dir.resolve():
            return int(found.group(1))
    return None


def run_folder_of(checkpoint: Path) -> Path:
    """The run folder a checkpoint belongs to (``.../version_N`` for ``version_N/checkpoints/x.ckpt``),
    else the checkpoint's own folder."""
    path = checkpoint.resolve()
    return path.parent.parent if path.parent.name == "checkpoints" else path.parent


def process_gone(host: object, pid: object) -> bool:
    """Whether the process ``pid`` recorded on ``host`` is known to have ended: only a process of this
    host can be checked; one of another host, or an unreadable record, counts as not gone."""
    if host != socket.gethostname() or not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)  # signal 0: an existence check, nothing is sent
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, under another user
        return False
    return False


def claim_next_version(exp_dir: Path) -> int:
    """Create ``version_N`` with the next free N and return N.

    ``mkdir`` either creates the folder or fails, atomically, so two runs started at the same
    moment never share a version (TensorBoardLogger alone picks "max + 1" without claiming it).
    """
    try:
        exp_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OSError(
            f"cannot create the run folder {exp_dir} ({err.strerror or err}); set --trainer.default_root_dir "
            "to a writable folder"
        ) from None
    existing = versions(exp_dir)
    version = existing[-1] + 1 if existing else 0
    while True:
        try:
            (exp_dir / f"version_{version}").mkdir()
            return version
        except FileExistsError:
            version += 1
        except OSError as err:
            raise OSError(
                f"cannot create a run folder in {exp_dir} ({err.strerror or err}); set "
                "--trainer.default_root_dir to a writable folder"
            ) from None


def check_checkpoint_experiment(path: Path, experiment: str, net_class_path: str | None) -> dict:
    """The checkpoint at ``path`` (tensors memory-mapped, not read); ValueError when it was written by
    another experiment or net."""
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
