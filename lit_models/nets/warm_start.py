"""Starting a net from a run of this project: pre-train on a large folder, fine-tune on a small one.

A net's ``weights`` option takes a checkpoint written by ``fit`` as well as a plain state_dict. The
checkpoint's weights are the task's (``net.`` in front of the net's own keys); its data description
(the ``inference`` entry every classifier checkpoint carries, see :mod:`lit_models.inference`) says how
that run normalised its images, which the fine-tune must repeat, as torchvision's weights carry their
transforms.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from lit_models.inference import CHECKPOINT_KEY

#: the task's attribute that holds the net: its keys in a checkpoint's state_dict start with this
NET_PREFIX = "net."


def is_run_checkpoint(loaded: Any) -> bool:
    """Whether ``torch.load`` of a file gave a Lightning checkpoint of a task (not a bare state_dict)."""
    state = loaded.get("state_dict") if isinstance(loaded, dict) else None
    return isinstance(state, dict) and "pytorch-lightning_version" in loaded and any(
        isinstance(k, str) and k.startswith(NET_PREFIX) for k in state)


def net_state(loaded: dict[str, Any], inner: str = "") -> dict[str, torch.Tensor]:
    """The net's weights in a run's checkpoint, keyed as the net's own ``state_dict`` (``inner``: a prefix the
    net keeps inside, such as ``model.`` for a wrapped torchvision model).

    Returns:
        A state_dict; the task's own buffers (a temperature) and everything outside the net are left out.
    """
    prefix = NET_PREFIX + inner
    return {k[len(prefix):]: v for k, v in loaded["state_dict"].items() if k.startswith(prefix)}


def expects(loaded: dict[str, Any], path: str | Path) -> dict[str, Any] | None:
    """What a net started from this run expects of its data (normalisation and size), in the shape of
    torchvision's metadata that ``lit_models.classifier.check_data_fits_weights`` reads; None when the
    checkpoint carries no data description (written before checkpoints did).
    """
    record = loaded.get(CHECKPOINT_KEY)
    if not isinstance(record, dict):
        return None
    prep = record.get("preprocessing") or {}
    if "mean" not in prep or "std" not in prep:
        return None
    side = prep.get("center_crop") or prep.get("resize_to") or (record.get("input", {}).get("shape") or [0, 0, 0])[-1]
    return {"weights": str(path), "mean": list(prep["mean"]), "std": list(prep["std"]), "crop_size": int(side or 1),
            "min_size": [1, 1]}
