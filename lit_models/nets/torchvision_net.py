"""Any torchvision (or timm) classification model by name, with a new head for the data's classes.

``torchvision.models.get_model`` builds the model; its ImageNet head (a ``Linear``, or a 1x1 ``Conv2d``
for SqueezeNet, whatever the family calls it: ``fc``, ``classifier.1``, ``heads.head`` ...) is found as
the last layer with 1000 outputs and replaced. Weights come from torchvision's download (a weights name
of that model), from a local state_dict file (offline machines), or not at all (``none``: every layer
trainable from scratch).
"""

from __future__ import annotations

import difflib
import socket
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn
from typing_extensions import override

from lit_models.nets import timm_models, warm_start
from lit_models.nets.freezing import FrozenBackbone

#: how long the weights download may stall before we give up with a message
DOWNLOAD_TIMEOUT_S = 30
IMAGENET_CLASSES = 1000
#: families whose auxiliary heads only change what training returns; left out
NO_AUX = {"inception_v3": {"aux_logits": False}, "googlenet": {"aux_logits": False}}
OPTION = "--model.init_args.net.init_args"


def classification_models() -> list[str]:
    """The names of torchvision's classification models (what ``name`` accepts)."""
    return sorted(torchvision.models.list_models(module=torchvision.models))


def head_of(model: nn.Module) -> str:
    """The dotted name of the last layer with ImageNet's 1000 outputs."""
    found = None
    for name, module in model.named_modules():
        if (isinstance(module, nn.Linear) and module.out_features == IMAGENET_CLASSES) or (
                isinstance(module, nn.Conv2d) and module.out_channels == IMAGENET_CLASSES):
            found = name
    if found is None:
        raise ValueError(f"{type(model).__name__} has no layer with {IMAGENET_CLASSES} outputs to replace")
    return found


def new_head(old: nn.Module, num_classes: int) -> nn.Module:
    """A fresh layer shaped like ``old`` (a Linear or a 1x1 Conv2d) with ``num_classes`` outputs."""
    if isinstance(old, nn.Linear):
        return nn.Linear(old.in_features, num_classes)
    return nn.Conv2d(old.in_channels, num_classes, kernel_size=old.kernel_size, stride=old.stride)


def _download(name: str, weights: str) -> dict[str, torch.Tensor]:
    enum = torchvision.models.get_model_weights(name)
    if weights not in enum.__members__ and weights != "DEFAULT":
        raise ValueError(f"{OPTION}.weights {weights}: not a file, none, or a weights name of {name} "
                         f"({', '.join(['DEFAULT', *(m for m in enum.__members__ if m != 'DEFAULT')])})")
    chosen = enum.DEFAULT if weights == "DEFAULT" else enum[weights]
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        return chosen.get_state_dict(progress=True, check_hash=True)
    except Exception as err:  # noqa: BLE001 - URLError, timeout, HTTP errors, a bad hash
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        file = Path(chosen.url).name
        raise ConnectionError(f"could not fetch {name} weights {chosen.name} ({reason}); pass {OPTION}.weights PATH "
                              f"to a local {file} (or any {name} state_dict), or weights: none") from None
    finally:
        socket.setdefaulttimeout(previous)


def _read(path: Path, name: str) -> Any:
    """A weights file as ``torch.load`` gives it: a state_dict, or a checkpoint (a run's, or any with one inside)."""
    try:
        state = timm_models.read_file(path)
    except Exception as err:  # noqa: BLE001
        raise ValueError(f"{OPTION}.weights {path} cannot be read as a state_dict ({type(err).__name__})") from None
    if warm_start.is_run_checkpoint(state):
        return state
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{OPTION}.weights {path} holds a {type(state).__name__}, not a {name} state_dict")
    return state


class TorchvisionClassifier(FrozenBackbone):
    """A torchvision classification model (``name``) with its head replaced for ``num_classes``.

    Args:
        name: a torchvision classification model: resnet18, resnet50, efficientnet_b0, mobilenet_v3_large,
            convnext_tiny, vit_b_16, regnet_y_400mf, alexnet, ... (torchvision.models.list_models()); or
            ``timm/<model>`` for one of timm's (``timm/convnext_nano``, ``timm/resnet50.a1_in1k``; needs timm).
        num_classes: outputs of the new head; default the data's number of classes.
        weights: DEFAULT or a weights name of the model (torchvision downloads it; timm's own download and cache
            for a timm model), a state_dict file with
            torchvision's keys (offline), a checkpoint of a run of this project with the same model (its
            backbone loads as trained, its head is rebuilt when the class count differs, its normalisation
            is expected of the data), or none (random init, every layer trained).
        freeze_backbone: train only the head: the rest gets no gradients and keeps BatchNorm in eval mode.
    """

    def __init__(self, name: str = "resnet18", num_classes: int | None = None, weights: str = "DEFAULT",
                 freeze_backbone: bool = False) -> None:
        super().__init__()
        self.name = name
        if timm_models.is_timm(name):
            self.model = timm_models.build(name)
        else:
            known = classification_models()
            if name not in known:
                close = difflib.get_close_matches(name, known, n=3)
                hint = f" (did you mean {', '.join(close)}?)" if close else ""
                raise ValueError(f"{OPTION}.name {name}: not a torchvision classification model{hint}")
            self.model = torchvision.models.get_model(name, weights=None, **NO_AUX.get(name, {}))
        self.head_name = head_of(self.model)
        self.weights = weights
        self.expects = None
        self.num_classes: int | None = None
        if weights.lower() != "none":
            path = Path(weights)
            state = _read(path, name) if path.is_file() else (
                timm_models.pretrained_state(name) if timm_models.is_timm(name) else _download(name, weights))
            if warm_start.is_run_checkpoint(state):  # a run of ours: its head sized as saved, then replaced below
                self.expects = warm_start.expects(state, path)
                state = warm_start.net_state(state, "model.")
                self._resize_head_to(state)
            elif timm_models.is_timm(name):
                self.expects = timm_models.expects(self.model, name, weights)
            else:
                self.expects = self._expects(weights)
            self._load(state, weights)
        if num_classes is not None:
            self.match_classes(num_classes)
        self.freeze_backbone = freeze_backbone
        self.freeze_if_asked()

    def _load(self, state: dict[str, torch.Tensor], source: str) -> None:
        expected = self.model.state_dict()
        aux = ("AuxLogits.", "aux1.", "aux2.")
        state = {k: v for k, v in state.items() if not (k.startswith(aux) and k not in expected)}
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        wrong = sorted(k for k in set(expected) & set(state) if state[k].shape != expected[k].shape)
        if missing or unexpected or wrong:
            parts = [f"missing {missing[:4]}" if missing else "", f"unexpected {unexpected[:4]}" if unexpected else "",
                     "shape " + ", ".join(f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
                                          for k in wrong[:3]) if wrong else ""]
            raise ValueError(f"{OPTION}.weights {source} do not fit {self._family()}'s {self.name}: "
                             f"{'; '.join(p for p in parts if p)}")
        self.model.load_state_dict(state)

    def _family(self) -> str:
        return "timm" if timm_models.is_timm(self.name) else "torchvision"

    def _expects(self, weights: str) -> dict[str, Any] | None:
        """What the pretrained weights were trained on (torchvision's metadata): None for ``none``."""
        if weights.lower() == "none":
            return None
        enum = torchvision.models.get_model_weights(self.name)
        chosen = enum[weights] if weights in enum.__members__ else enum.DEFAULT
        preset = chosen.transforms()
        return {"weights": chosen.name, "mean": list(preset.mean), "std": list(preset.std),
                "crop_size": int(preset.crop_size[0]), "min_size": list(chosen.meta.get("min_size", (1, 1)))}

    # -- the head and the rest --------------------------------------------------------------------

    def _resize_head_to(self, state: dict[str, torch.Tensor]) -> None:
        """Give the head the output count it has in ``state`` (a run's checkpoint, trained on its own classes)."""
        saved = state.get(f"{self.head_name}.weight")
        if saved is not None and saved.dim() >= 1:
            self.match_classes(int(saved.shape[0]))  # kept when the data has as many classes, else replaced

    def match_classes(self, num_classes: int) -> None:
        """A new head for ``num_classes`` unless it has that many outputs already (e.g. from a checkpoint)."""
        old = self.model.get_submodule(self.head_name)
        outputs = old.out_features if isinstance(old, nn.Linear) else old.out_channels
        if self.num_classes == num_classes and outputs == num_classes:
            return
        parent, _, leaf = self.head_name.rpartition(".")
        setattr(self.model.get_submodule(parent) if parent else self.model, leaf, new_head(old, num_classes))
        self.num_classes = num_classes

    @property
    def head(self) -> nn.Module:
        """The model's new last layer, sized for the data's classes."""
        return self.model.get_submodule(self.head_name)

    @property
    def backbone(self) -> nn.ModuleList:
        """Every module but the head (a view over the same parameters): what freezing and a lower rate act on."""
        parts: list[nn.Module] = []
        module, path = self.model, self.head_name.split(".")
        for step in path:
            parts += [child for name, child in module.named_children() if name != step]
            own = list(module.parameters(recurse=False))  # e.g. ViT's class token
            if own:
                parts.append(nn.ParameterList(own))
            module = module.get_submodule(step)
        return nn.ModuleList(parts)

    @override
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
