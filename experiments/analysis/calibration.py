"""``calibrate``: temperature scaling (Guo et al. 2017) of a classifier's checkpoint, fitted on the validation split.

A trained net is often over-confident: its top probability says 0.99 where it is right 90% of the time. One
positive number ``T`` divides the logits before the softmax; it is fitted by minimising the negative log
likelihood on the validation split (LBFGS over ``log T``, so ``T`` stays positive). Dividing by a positive
number keeps every arg-max, so accuracy is unchanged to the last digit and only the probabilities move.

The temperature is written into the checkpoint it was fitted for (the task's ``temperature`` buffer in its
``state_dict``, the file replaced atomically) and recorded in ``<run>/calibration.json``: ``test``, ``predict``,
``export`` (the graph divides by it) and ``serve`` of that checkpoint apply it, here or on another machine.
The other checkpoints of the run keep their own (1 until calibrated): a temperature belongs to the weights it
was fitted on, and training from a checkpoint starts again from 1.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import multiclass_calibration_error
from typing_extensions import override

from datamodules.base.ranks import gather_from_ranks
from experiments.files import write_atomically
from experiments.runs.folder import RunFolder

#: ECE bins, as the test's ``test/ece`` and the analysis (experiments.analysis.errors.BINS)
BINS = 15
#: the state_dict key of the task's temperature buffer
KEY = "temperature"


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor, max_iter: int = 100) -> float:
    """The temperature minimising the mean NLL of ``softmax(logits / T)`` (LBFGS, strong Wolfe line search)."""
    # copies: tensors from an evaluation loop are inference tensors, which autograd cannot record
    logits, targets = logits.detach().double().clone(), targets.detach().long().clone()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), targets)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp())


def scores(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0) -> dict[str, float]:
    """Accuracy, NLL and ECE (torchmetrics, 15 bins, L1) of ``softmax(logits / temperature)``."""
    scaled = logits.detach().double() / temperature
    probs = scaled.softmax(1).float()
    k = logits.shape[1]
    return {"acc": float((scaled.argmax(1) == targets).double().mean()),
            "nll": float(F.cross_entropy(scaled, targets)),
            "ece": float(multiclass_calibration_error(probs, targets, k, n_bins=BINS, norm="l1"))}


class ValidationLogits(L.Callback):
    """Keeps the validation pass's uncalibrated logits and targets (every rank's, on rank zero).

    At the start of validation (after Lightning has loaded the checkpoint) the task's temperature is set to 1,
    so what ``validation_step`` returns is the net's own logits.
    """

    def __init__(self) -> None:
        self.logits: torch.Tensor | None = None
        self.targets: torch.Tensor | None = None
        self._parts: list[tuple[torch.Tensor, torch.Tensor]] = []

    @override
    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._parts = []
        getattr(pl_module, KEY).fill_(1.0)

    @override
    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if trainer.sanity_checking or not isinstance(outputs, dict) or "logits" not in outputs:
            return
        self._parts.append((outputs["logits"].detach().float().cpu(), batch[1].detach().cpu()))

    @override
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        local = (torch.cat([p[0] for p in self._parts]) if self._parts else torch.empty(0),
                 torch.cat([p[1] for p in self._parts]) if self._parts else torch.empty(0, dtype=torch.int64))
        parts = gather_from_ranks(local, trainer.strategy)  # collective: every rank
        self._parts = []
        self.logits = torch.cat([p[0] for p in parts if len(p[0])])
        self.targets = torch.cat([p[1] for p in parts if len(p[1])])


def store_temperature(ckpt_path: str | Path, temperature: float, record: dict[str, Any]) -> None:
    """Write ``temperature`` into the checkpoint's ``state_dict`` and ``record`` under ``calibration``: the file
    is replaced whole (a temporary file renamed over it), never left half-written.
    """
    path = Path(ckpt_path).resolve()  # a symbolic link (last.ckpt) stays a link to the file it names
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    checkpoint["state_dict"][KEY] = torch.tensor(temperature, dtype=torch.float32)
    checkpoint["calibration"] = record
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    write_atomically(path, buffer.getbuffer(), fsync=True)


def calibrate(trainer: L.Trainer, task: L.LightningModule, datamodule: Any, ckpt_path: str,
              run: RunFolder | None, max_iter: int = 100, report: bool = True) -> dict[str, Any] | None:
    """Fit the checkpoint's temperature on the validation split, store it with the checkpoint, print the
    before/after scores; returns the record (on rank zero; None elsewhere).
    """
    if not hasattr(task, KEY):
        raise ValueError(f"calibrate: {type(task).__name__} has no temperature to fit; calibration is for "
                         "classifiers (ImageClassifier)")
    if max_iter < 1:
        raise ValueError(f"--max_iter must be >= 1, got {max_iter}")
    collector = ValidationLogits()
    trainer.callbacks.append(collector)
    try:
        with warnings.catch_warnings():  # the run's callbacks are left out on purpose: the pass only reads
            warnings.filterwarnings("ignore", message="Be aware that when using `ckpt_path`, callbacks")
            trainer.validate(task, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False)
    finally:
        trainer.callbacks.remove(collector)
    if not trainer.is_global_zero:
        return None
    if collector.logits is None or not len(collector.logits):
        raise ValueError(f"calibrate: {type(datamodule).__name__} gave no validation samples; calibration fits "
                         "on the validation split (set --data.init_args.val_size)")
    logits, targets = collector.logits, collector.targets
    temperature = fit_temperature(logits, targets, max_iter)
    before, after = scores(logits, targets, 1.0), scores(logits, targets, temperature)
    record = {"temperature": temperature, "checkpoint": Path(ckpt_path).name, "samples": len(targets),
              "validation": {"before": before, "after": after}, "bins": BINS}
    store_temperature(ckpt_path, temperature, record)
    getattr(task, KEY).fill_(temperature)
    if run is not None:
        path = run.path / "calibration.json"
        recorded = json.loads(path.read_text()) if path.is_file() else {}
        recorded[Path(ckpt_path).resolve().name] = record
        write_atomically(path, json.dumps(recorded, indent=2) + "\n")
    if report:
        print(f"temperature {temperature:.4f} fitted on {len(targets)} validation samples "
              f"(written into {Path(ckpt_path).resolve()})")
        print(f"validation ECE {before['ece']:.4f} -> {after['ece']:.4f}, NLL {before['nll']:.4f} -> "
              f"{after['nll']:.4f}, accuracy {before['acc']:.4f} (unchanged)")
    return record
