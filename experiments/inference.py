"""A trained task as one module from raw input to the answer, for ``export`` and ``serve``.

Training code prepares batches in the data module and scores them in the task; a shipped model has
neither. :class:`InferenceModel` puts the data module's own evaluation preprocessing in front of
the net (and flip test-time augmentation when the task uses it), so that the exported graph and
the server take what a user has (uint8 images of the data set's raw size, or sin(1/x)'s float x)
and give what a user wants (class probabilities, or the prediction).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lit_models.classifier import ImageClassifier
from lit_models.task import Task


class InferenceModel(nn.Module):
    """``raw input -> probabilities (N, K)`` for a classifier, ``x (N, 1) -> prediction (N, 1)`` otherwise."""

    def __init__(self, net: nn.Module, preprocess: nn.Module | None, tta_flip: bool, classify: bool) -> None:
        super().__init__()
        self.preprocess = preprocess if preprocess is not None else nn.Identity()
        self.net = net
        self.tta_flip = tta_flip
        self.classify = classify

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(x)
        out = self.net(x)
        if self.tta_flip:  # the task's test-time augmentation: the mean of the image's and its mirror's logits
            out = (out + self.net(x.flip(-1))) / 2
        return out.float().softmax(1) if self.classify else out


def load_net_weights(task: Task, ckpt_path: str | Path) -> dict[str, Any]:
    """Load the net's weights from a Lightning checkpoint into ``task`` (strictly); return the checkpoint."""
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    state = {k.removeprefix("net."): v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}
    try:
        task.net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        reason = str(err).strip().splitlines()[0]
        raise ValueError(f"--ckpt_path {ckpt_path}: its weights do not fit the configured net ({reason}); "
                         "pass the config it was trained with") from None
    return checkpoint


def build(task: Task, datamodule: Any) -> tuple[InferenceModel, dict[str, Any]]:
    """The task's net behind the data module's evaluation preprocessing, in fp32 on the CPU and in eval
    mode, and a description of its input and output (for ``model.json`` and the server)."""
    task = task.float().cpu().eval()
    classify = isinstance(task, ImageClassifier)
    if classify:
        preprocess = datamodule.preprocessor()
        shape = list(datamodule.raw_image_shape)
        classes = list(datamodule.class_names)
        model = InferenceModel(task.net, preprocess, task.tta_flip, classify=True)
        info = {
            "task": "classification",
            "input": {"name": "images", "dtype": "uint8", "shape": ["N", *shape], "layout": "NCHW"},
            "output": {"name": "probabilities", "dtype": "float32", "shape": ["N", len(classes)]},
            "class_names": classes,
            "preprocessing": {"scale": 1 / 255, "mean": list(preprocess.mean.flatten().tolist()),
                              "std": list(preprocess.std.flatten().tolist()), "pad": preprocess.pad,
                              "resize_to": preprocess.size, "tta_flip": task.tta_flip},
        }
    else:
        model = InferenceModel(task.net, None, tta_flip=False, classify=False)
        info = {
            "task": "regression",
            "input": {"name": "x", "dtype": "float32", "shape": ["N", 1]},
            "output": {"name": "prediction", "dtype": "float32", "shape": ["N", 1]},
        }
    return model.eval(), info


def example_inputs(datamodule: Any, n: int) -> torch.Tensor:
    """The first ``n`` raw inputs of the data module's predict split (its own data, as stored)."""
    datamodule.prepare_data()
    datamodule.setup("predict")
    inputs = datamodule.predict_tensors()[0][:n]
    if inputs.dim() == 3:  # (N, H, W) grey images -> (N, 1, H, W), the exported input layout
        inputs = inputs.unsqueeze(1)
    return inputs.cpu().contiguous()


def reference_outputs(task: Task, datamodule: Any, inputs: torch.Tensor) -> torch.Tensor:
    """What ``predict`` computes for ``inputs``: the data module's batch preparation, then the task's step."""
    task = task.float().cpu().eval()
    with torch.no_grad():
        x = datamodule.to_float(inputs, train=False) if inputs.dtype == torch.uint8 else inputs
        out = task.predict_step((x,), 0)
    return out["probabilities"] if "probabilities" in out else out["prediction"]


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
