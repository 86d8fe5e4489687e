"""A checkpoint on a machine without its training data: ``predict``, ``export`` and ``serve`` from the checkpoint.

Every checkpoint carries the task's hyperparameters (LightningCLI saves them, the net included) and its
inference description (:meth:`lit_models.inference.Inference.record`). Without ``-c`` the command's config is
built from those two: the task as trained, and :class:`datamodules.folder.from_checkpoint.CheckpointData` for
the data. With ``-c`` and a training folder that is no longer there, the same stand-in replaces the folder. With
the data present, data that contradicts what the checkpoint records (other classes, another size or
normalisation) is one line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from experiments.runs.checkpoints import EXPERIMENT_KEY, read_checkpoint
from experiments.terminal import listed
from lit_models.inference import CHECKPOINT_KEY

#: the commands a checkpoint alone can run (the others need the data's splits)
COMMANDS = ("predict", "export", "serve")
STAND_IN = "datamodules.folder.from_checkpoint.CheckpointData"
#: the stand-in's options that a configured data module passes on (the same names in both)
PASSED_ON = ("predict_dir", "batch_size", "eval_batch_size", "decode_workers")


def _configured(tokens: list[str]) -> bool:
    """Whether the command line names a config, the task or the data module itself."""
    for token in tokens:
        name = token.split("=", 1)[0]
        if name in ("-c", "--config", "--model", "--data", "--model.class_path", "--data.class_path"):
            return True
    return False


def _ckpt_path(tokens: list[str]) -> str | None:
    for i, token in enumerate(tokens):
        if token == "--ckpt_path" and i + 1 < len(tokens):
            return tokens[i + 1]
        if token.startswith("--ckpt_path="):
            return token.split("=", 1)[1]
    return None


def without_config(tokens: list[str]) -> list[str]:
    """The command line, with the checkpoint's own config put in front when a checkpoint command names none.

    Raises:
        ValueError: ``best``/``last`` without a config, or a checkpoint that carries no description (one line).
    """
    if not tokens or tokens[0] not in COMMANDS or _configured(tokens):
        return tokens
    path = _ckpt_path(tokens)
    if path is None:
        return tokens  # the command's own check says that it needs --ckpt_path
    if path in ("best", "last"):
        raise ValueError(f"--ckpt_path {path} looks among an experiment's runs: pass -c CONFIG (or --experiment) with "
                         "it, or the path of a .ckpt file to run from the checkpoint alone")
    if not Path(path).is_file():
        raise FileNotFoundError(f"--ckpt_path {path}: no such file; pass the path of a .ckpt file")
    checkpoint = read_checkpoint(Path(path))
    config = config_of(checkpoint, path)
    return [tokens[0], "--config", json.dumps(config), *tokens[1:]]


def config_of(checkpoint: dict[str, Any], path: str | os.PathLike) -> dict[str, Any]:
    """The config a checkpoint runs with on its own: its experiment, its task as trained, the stand-in data.

    Raises:
        ValueError: the checkpoint carries no inference description, or no task class (written before they were).
    """
    record = checkpoint.get(CHECKPOINT_KEY)
    hparams = checkpoint.get("hyper_parameters") or {}
    task = hparams.get("_class_path")
    if not isinstance(record, dict) or not isinstance(task, str):
        raise ValueError(f"--ckpt_path {path} was written before checkpoints carried their data description: pass "
                         "-c CONFIG with the data it was trained on (or fit again to get a self-contained checkpoint)")
    init_args = {k: v for k, v in hparams.items() if not k.startswith("_")}
    return {"experiment": checkpoint.get(EXPERIMENT_KEY) or Path(path).stem,
            "model": {"class_path": task, "init_args": init_args},
            "data": {"class_path": STAND_IN, "init_args": {"description": record}}}


def data_is_gone(data: dict[str, Any], base: str | os.PathLike) -> bool:
    """Whether the configured data module reads a folder (``root``) that is not there."""
    root = (data.get("init_args") or {}).get("root")
    return isinstance(root, str) and not (Path(base) / os.path.expanduser(root)).exists()


def stand_in_for(data: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """The stand-in data module's config in place of ``data``, keeping what predict needs of it."""
    given = data.get("init_args") or {}
    kept = {name: given[name] for name in PASSED_ON if given.get(name) is not None}
    return {"class_path": STAND_IN, "init_args": {"description": record, **kept}}


def contradiction(record: dict[str, Any], datamodule: Any, path: str) -> str | None:
    """A line naming what the configured data contradicts in the checkpoint's description (None: it fits)."""
    if (record.get("input") or {}).get("kind") != "image":
        return None
    recorded = [str(n) for n in record.get("class_names") or []]
    names = [str(n) for n in getattr(datamodule, "class_names", None) or []]
    if recorded and names and recorded != names:
        return (f"--ckpt_path {path} was trained on classes {listed(recorded)}; the configured data has "
                f"{listed(names)}: pass the data it was trained on, or the checkpoint alone (no -c)")
    shape = [int(n) for n in (record.get("input") or {}).get("shape", [])[1:]]
    raw = list(getattr(datamodule, "raw_image_shape", None) or [])
    if shape and raw and shape != raw:
        return (f"--ckpt_path {path} was trained on images stored at {'x'.join(map(str, shape))} (C x H x W); the "
                f"configured data stores {'x'.join(map(str, raw))}: drop --data.image_size/--data.storage_size/"
                "--data.channels, or pass the checkpoint alone (no -c)")
    prep = record.get("preprocessing") or {}
    for name in ("mean", "std"):
        saved, given = prep.get(name), getattr(datamodule, name, None)
        if saved is not None and given is not None and (len(saved) != len(given) or any(
                abs(float(a) - float(b)) > 1e-6 for a, b in zip(saved, given, strict=False))):
            return (f"--data.{name} {list(given)} contradicts --ckpt_path {path}, trained with {name} {list(saved)}: "
                    f"drop --data.{name}")
    return None


