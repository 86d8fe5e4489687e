"""A trained task made ready to ship: its weights from a checkpoint, its inference contract on the CPU in
fp32, example inputs from its own data, and what ``predict`` computes for them (the parity reference).

Everything here reads the task's :class:`lit_models.inference.Inference`; nothing asks what kind of
task it is.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from lit_models.inference import Inference

if TYPE_CHECKING:  # a serve worker imports this module without Lightning
    from lit_models.task import Task


def load_net_weights(task: Task, ckpt_path: str | Path) -> dict[str, Any]:
    """Load the net's weights from a Lightning checkpoint into ``task`` (strictly), and the task's own buffers
    the checkpoint holds (a classifier's ``temperature``); return the checkpoint.
    """
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    saved = checkpoint["state_dict"]
    state = {k.removeprefix("net."): v for k, v in saved.items() if k.startswith("net.")}
    try:
        task.net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        reason = str(err).strip().splitlines()[0]
        raise ValueError(f"--ckpt_path {ckpt_path}: its weights do not fit the configured net ({reason}); "
                         "pass the config it was trained with") from None
    for name, buffer in task.named_buffers(recurse=False):
        if name in saved and saved[name].shape == buffer.shape:
            buffer.copy_(saved[name])
    return checkpoint


def prepare(task: Task, datamodule: Any) -> Inference:
    """The task's inference contract with its module in fp32, on the CPU, in eval mode."""
    task.float().cpu().eval()
    inference = task.inference(datamodule)
    inference.module = inference.module.float().cpu().eval()
    return inference


def example_inputs(datamodule: Any, inference: Inference, n: int) -> torch.Tensor:
    """The first ``n`` raw inputs of the data module's predict split (its own data, as stored), shaped as
    the inference module takes them.
    """
    datamodule.prepare_data()
    datamodule.setup("predict")
    inputs = datamodule.predict_tensors()[0][:n]
    return inputs.reshape(len(inputs), *inference.input_shape).to(inference.input_dtype).cpu().contiguous()


def reference_outputs(task: Task, datamodule: Any, inference: Inference, inputs: torch.Tensor) -> torch.Tensor:
    """What ``predict`` computes for ``inputs``: the data module's batch preparation, then the task's step."""
    task.float().cpu().eval()
    with torch.no_grad():
        batch = datamodule.on_after_batch_transfer((inputs,), 0)
        return task.predict_step(batch, 0)[inference.output_name]


def sha256(path: str | Path) -> str:
    """The SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
