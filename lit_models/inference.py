"""The inference contract: what a trained task is once it leaves training, for predict, export and serve.

Training prepares batches in the data module and scores them in the task; a shipped model has
neither. Each task says, through :meth:`lit_models.task.Task.inference`, how raw input becomes
its answer (the data module's evaluation preprocessing, the net, test-time augmentation, the
output head) and what that input and answer are. ``predict``'s writer, ``export`` and ``serve``
read only this description, so a new kind of task ships without touching them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn
from typing_extensions import override

#: ``image``: encoded image files decoded to uint8 (C, H, W); ``tensor``: numbers given as (nested) lists
InputKind = Literal["image", "tensor"]
#: ``probabilities``: one class per sample, probabilities over ``labels``; ``values``: numbers per sample
OutputKind = Literal["probabilities", "values"]
#: the top-level checkpoint entry holding :meth:`Inference.record`: what the model needs to run without its data
CHECKPOINT_KEY = "inference"


class InferencePipeline(nn.Module):
    """``raw input -> answer``: preprocessing, the net (averaged with its mirror image under flip
    test-time augmentation), then the output head (softmax, sigmoid, or nothing).
    """

    def __init__(self, net: nn.Module, preprocess: nn.Module | None = None, tta_flip: bool = False,
                 head: nn.Module | None = None, temperature: float = 1.0) -> None:
        super().__init__()
        self.preprocess = preprocess if preprocess is not None else nn.Identity()
        self.net = net
        self.tta_flip = tta_flip
        self.head = head if head is not None else nn.Identity()
        #: the net's outputs are divided by it before the head (a calibrated classifier's temperature)
        self.temperature = float(temperature)

    @override
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(x)
        out = self.net(x)
        if self.tta_flip:  # the task's test-time augmentation: the mean of the image's and its mirror's outputs
            out = (out + self.net(x.flip(-1))) / 2
        out = out.float()
        if self.temperature != 1.0:
            out = out / self.temperature
        return self.head(out)


@dataclass
class Inference:
    """A task's inference model and the description of its input and output.

    Args:
        module: raw input -> answer, batched on the first dimension.
        task: a word for model.json (``classification``, ``regression``, ...).
        input_kind: how a request carries the input (see :data:`InputKind`).
        input_name: the input's name (exported graph, JSON requests).
        input_dtype: the dtype the module takes.
        input_shape: one sample's shape, without the batch dimension.
        output_kind: what the answer is (see :data:`OutputKind`).
        output_name: the answer's name; also the key of ``predict_step``'s output that holds it.
        labels: a name per output column (class names, tag names); empty when unnamed.
        output_size: values per sample (default: one per label).
        preprocessing: what ``module`` does before the net, for model.json.
        temperature: what ``module`` divides the net's outputs by before the head (``calibrate``'s; 1: none).
    """

    module: nn.Module
    task: str
    input_kind: InputKind
    input_name: str
    input_dtype: torch.dtype
    input_shape: tuple[int, ...]
    output_kind: OutputKind
    output_name: str
    labels: list[str] = field(default_factory=list)
    output_size: int | None = None
    preprocessing: dict[str, Any] = field(default_factory=dict)
    temperature: float = 1.0

    def describe(self) -> dict[str, Any]:
        """The description written into model.json (and read back by a server)."""
        outputs = self.output_size or len(self.labels) or "K"
        info: dict[str, Any] = {
            "task": self.task,
            "input": {"name": self.input_name, "kind": self.input_kind, "dtype": str(self.input_dtype).removeprefix(
                "torch."), "shape": ["N", *self.input_shape]},
            "output": {"name": self.output_name, "kind": self.output_kind, "dtype": "float32",
                       "shape": ["N", outputs]},
        }
        if self.input_kind == "image":
            info["input"]["layout"] = "NCHW"
        if self.labels:
            info["class_names" if self.output_kind == "probabilities" else "labels"] = list(self.labels)
        if self.preprocessing:
            info["preprocessing"] = dict(self.preprocessing)
        if self.output_kind == "probabilities":
            info["output"]["temperature"] = self.temperature
        return info

    def record(self) -> dict[str, Any]:
        """What a checkpoint carries so that predict, export and serve run from it alone: model.json's
        description without the temperature (the checkpoint's state_dict holds that, and ``calibrate``
        changes it there).

        Returns:
            A dict of plain values (``torch.load(weights_only=True)`` reads it back).
        """
        info = self.describe()
        info["output"] = {k: v for k, v in info["output"].items() if k != "temperature"}
        return info
