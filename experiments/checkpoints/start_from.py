"""A fit that starts from another run of this project: pre-train on a large folder, fine-tune on a small one.

The net's ``weights`` option takes that run's checkpoint (a path, or ``<experiment>:best`` / ``<experiment>:last``,
found as ``--ckpt_path best|last`` finds them); the net loads its backbone (``lit_models.nets.warm_start``) and
the data is normalised as that run normalised it, unless ``--data.mean``/``--data.std`` are typed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from experiments.runs import checkpoints
from experiments.runs.folder import ExperimentFolder
from lit_models.inference import CHECKPOINT_KEY
from lit_models.nets import timm_models

WEIGHTS = "model.init_args.net.init_args.weights"
NAME = "model.init_args.net.init_args.name"
#: ``<experiment>:best`` or ``<experiment>:last``
REFERENCE = re.compile(r"^(?P<experiment>[^:/\\]+):(?P<which>best|last)$")


def resolve_reference(weights: str, root: str) -> str:
    """``<experiment>:best|last`` as the path of that checkpoint under ``root``; any other value as it is.

    Raises:
        ValueError: the experiment has no such checkpoint (one line, from ``--ckpt_path``'s lookup).
    """
    match = REFERENCE.match(weights)
    if match is None:
        return weights
    try:
        _, path, _ = checkpoints.resolve(ExperimentFolder.at(root, match["experiment"]), match["which"])
    except ValueError as err:
        reason = str(err).removeprefix(f"--ckpt_path {match['which']}: ")
        raise ValueError(f"--{WEIGHTS} {weights}: {reason}") from None
    return str(path)


def inference_record(path: str | Path) -> dict[str, Any] | None:
    """The inference description a run's checkpoint carries (None: not a checkpoint of ours, or an older one)."""
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - not a checkpoint: the net reads the file and says what it is
        return None
    record = loaded.get(CHECKPOINT_KEY) if isinstance(loaded, dict) else None
    return record if isinstance(record, dict) else None


def typed_data_options(tokens: list[str]) -> set[str]:
    """The data module's options given on the command line (``--data.mean`` or ``--data.init_args.mean``)."""
    names = set()
    for token in tokens:
        if token.startswith("--data."):
            names.add(token[2:].split("=", 1)[0].split(".")[-1])
    return names


def apply(config: Any, root: str, tokens: list[str]) -> str | None:
    """Resolve the net's ``weights`` reference in ``config``; normalise the data as those weights expect (a run of
    ours: as that run did; a timm model: as its pretrained config says), unless ``--data.mean/std`` are typed.

    Returns:
        A line saying what was taken (None when nothing was).
    """
    weights = config.get(WEIGHTS)
    if not isinstance(weights, str):
        return None
    resolved = resolve_reference(weights, root)
    if resolved != weights:
        config[WEIGHTS] = resolved
    stats, source = None, None
    record = inference_record(resolved) if Path(resolved).is_file() else None
    prep = (record or {}).get("preprocessing") or {}
    if prep.get("mean") is not None and prep.get("std") is not None:
        stats, source = (prep["mean"], prep["std"]), f"starting from {resolved}; data normalised as that run"
    else:
        name = config.get(NAME)
        if isinstance(name, str) and timm_models.is_timm(name) and resolved.lower() != "none":
            stats, source = timm_models.normalisation(name), f"data normalised as {name}'s pretrained weights"
    data = config.get("data.init_args")
    if stats is None or data is None or "mean" not in data or "std" not in data:
        return f"starting from {resolved}" if record is not None else None
    typed = typed_data_options(tokens)
    taken = []
    for option, values in zip(("mean", "std"), stats, strict=True):
        if option not in typed and len(values) == len(data[option] or ()):
            data[option] = [float(v) for v in values]
            taken.append(f"{option} {[round(v, 4) for v in data[option]]}")
    return f"{source}: {', '.join(taken)}" if taken else (f"starting from {resolved}" if record is not None else None)
