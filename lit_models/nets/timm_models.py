"""timm's models by name (``name: timm/<model>``), for :class:`lit_models.nets.TorchvisionClassifier`.

timm (optional: ``pip install -e ".[timm]"``) builds the model with its ImageNet head, which the classifier then
replaces as it does torchvision's; the weights come from a local file or from timm's own download and cache
(Hugging Face Hub), and what they expect of the data (mean, std, input size) from the model's pretrained config,
as torchvision's come from its weights' metadata.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import torch
from torch import nn

PREFIX = "timm/"
HINT = 'pip install "timm>=1.0,<2" (or: pip install -e ".[timm]" in the project)'
OPTION = "--model.init_args.net.init_args"


def require_timm() -> Any:
    """The timm module, or a one-line error naming what to install."""
    try:
        import timm
    except ImportError:
        raise ValueError(f"{OPTION}.name timm/...: timm is not installed: {HINT}") from None
    return timm


def is_timm(name: str) -> bool:
    """Whether ``name`` asks for a timm model."""
    return name.startswith(PREFIX)


def build(name: str) -> nn.Module:
    """The timm model ``timm/<model>`` (a tag such as ``resnet18.a1_in1k`` picks its weights), randomly initialised.

    Raises:
        ValueError: timm is missing, or knows no such model (with the closest names).
    """
    timm = require_timm()
    model = name.removeprefix(PREFIX)
    if not timm.is_model(model):
        close = difflib.get_close_matches(model, timm.list_models(), n=3)
        hint = f" (did you mean {', '.join(PREFIX + c for c in close)}?)" if close else ""
        raise ValueError(f"{OPTION}.name {name}: not a timm model{hint}")
    return timm.create_model(model, pretrained=False)


def pretrained_state(name: str) -> dict[str, torch.Tensor]:
    """The weights timm downloads (or finds in its cache) for ``timm/<model>``.

    Raises:
        ConnectionError: they cannot be fetched (offline): one line naming the local-file alternative.
    """
    timm = require_timm()
    try:
        return timm.create_model(name.removeprefix(PREFIX), pretrained=True).state_dict()
    except Exception as err:  # noqa: BLE001 - network errors, a missing hub entry, a bad file in the cache
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConnectionError(f"could not fetch the weights of {name} ({reason}); pass {OPTION}.weights PATH to a "
                              "local .safetensors/.pth state_dict of that model, or weights: none") from None


def read_file(path: Path) -> Any:
    """A weights file: safetensors by its suffix, else whatever ``torch.load`` reads (weights only)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def expects(model: nn.Module, name: str, weights: str) -> dict[str, Any] | None:
    """What the model's pretrained weights expect of the data (None for ``weights: none``)."""
    if weights.lower() == "none":
        return None
    cfg = getattr(model, "pretrained_cfg", None) or {}
    if "mean" not in cfg or "std" not in cfg:
        return None
    side = int((cfg.get("input_size") or (3, 224, 224))[-1])
    return {"weights": name, "mean": list(cfg["mean"]), "std": list(cfg["std"]), "crop_size": side,
            "min_size": [1, 1]}


def normalisation(name: str) -> tuple[list[float], list[float]] | None:
    """(mean, std) the pretrained weights of ``timm/<model>`` were trained with, read without building it."""
    timm = require_timm()
    cfg = timm.get_pretrained_cfg(name.removeprefix(PREFIX))
    if cfg is None or cfg.mean is None or cfg.std is None:
        return None
    return [float(v) for v in cfg.mean], [float(v) for v in cfg.std]
