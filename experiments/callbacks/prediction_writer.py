"""``predict`` writes its results: ``<run>/predictions/<source>.csv`` and ``<source>.pt``.

Lightning's ``predict`` returns the outputs and LightningCLI drops them. This writer keeps each
batch's outputs (on the CPU), gathers them from every rank when the epoch ends, puts the rows back
in sample order (each rank predicted a disjoint shard) and writes one table a person can read and
one ``.pt`` file a program can load. When the samples carry labels it also says the accuracy (or
MSE), computed with torchmetrics exactly as ``test`` computes it.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torchmetrics.functional.classification import multiclass_accuracy
from torchmetrics.functional.regression import mean_squared_error

from datamodules.ranks import gather_from_ranks

#: up to this many classes the table has a probability column per class; beyond, the top five
MAX_CLASS_COLUMNS = 20
TOP_K = 5


class PredictionWriter(BasePredictionWriter):
    """Writes the outputs of ``predict_step`` (dicts of tensors) as a CSV table and a ``.pt`` file.

    ``output_dir`` defaults to ``<run folder>/predictions``. The data module is asked (duck-typed) for
    ``predict_source`` (the file stem), ``predict_names`` (a name per sample, e.g. file names) and
    ``class_names``.
    """

    def __init__(self, output_dir: str | None = None) -> None:
        super().__init__(write_interval="batch_and_epoch")
        self.output_dir = output_dir
        self._outputs: list[dict[str, torch.Tensor]] = []
        #: paths of the last files written, and the score printed with them (for callers and tests)
        self.written: dict[str, Path] = {}
        self.score: tuple[str, float] | None = None

    def on_predict_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._outputs.clear()

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        if isinstance(prediction, dict):
            self._outputs.append({k: v.detach().cpu() for k, v in prediction.items() if isinstance(v, torch.Tensor)})

    def write_on_epoch_end(self, trainer: Any, pl_module: Any, predictions: Any, batch_indices: Any) -> None:
        local = {key: torch.cat([o[key] for o in self._outputs]) for key in self._outputs[0]} if self._outputs else {}
        self._outputs.clear()
        parts = [p for p in gather_from_ranks(local, trainer.world_size) if p]  # collective: every rank
        run_dir = Path(trainer.log_dir or trainer.default_root_dir)  # log_dir is collective under DDP too
        if not trainer.is_global_zero or not parts:
            return
        merged = {key: torch.cat([p[key] for p in parts]) for key in parts[0]}
        if "index" in merged:  # rank r predicted samples r, r + world_size, ...: back to sample order
            order = merged["index"].argsort()
            merged = {key: value[order] for key, value in merged.items()}
        datamodule = trainer.datamodule
        source = str(getattr(datamodule, "predict_source", "predict"))
        out_dir = Path(self.output_dir) if self.output_dir else run_dir / "predictions"
        names = getattr(datamodule, "predict_names", None)
        classes = list(getattr(datamodule, "class_names", None) or [])
        self.written, self.score = write_predictions(merged, out_dir, source, names, classes)
        shown = f"; {self.score[0]} = {self.score[1]:.6g}" if self.score else ""
        n = len(next(iter(merged.values())))
        print(f"Predictions: {self.written['csv']} ({n} rows{shown})")


def write_predictions(outputs: dict[str, torch.Tensor], out_dir: Path, source: str, names: list[str] | None,
                      class_names: list[str]) -> tuple[dict[str, Path], tuple[str, float] | None]:
    """Write ``<source>.csv`` and ``<source>.pt`` into ``out_dir`` (each through a temporary file and a
    rename, so an interrupted run leaves no half-written table); return their paths and the score."""
    out_dir.mkdir(parents=True, exist_ok=True)
    n = len(outputs["prediction"])
    index = outputs.get("index", torch.arange(n))
    target = outputs.get("target", torch.full((n,), -1))
    sources = names if names is not None else [str(int(i)) for i in index]
    if "probabilities" in outputs:
        header, rows, score = _classification_rows(outputs, index, target, sources, class_names)
    else:
        header, rows, score = _regression_rows(outputs, index, target)
    csv_path, pt_path = out_dir / f"{source}.csv", out_dir / f"{source}.pt"
    tmp = csv_path.with_name(f".{csv_path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(tmp, csv_path)
    tmp = pt_path.with_name(f".{pt_path.name}.tmp")
    torch.save({**outputs, "index": index, "target": target, "source": sources, "class_names": class_names}, tmp)
    os.replace(tmp, pt_path)
    return {"csv": csv_path, "pt": pt_path}, score


def _classification_rows(outputs, index, target, sources, class_names):
    probs, prediction = outputs["probabilities"], outputs["prediction"]
    k = probs.shape[1]
    names = class_names if len(class_names) == k else [str(i) for i in range(k)]
    header = ["index", "source", "target", "prediction", "name", "probability"]
    per_class = k <= MAX_CLASS_COLUMNS
    if per_class:
        header += [f"p_{name}" for name in names]
    else:
        top = min(TOP_K, k)
        header += [col for i in range(1, top + 1) for col in (f"top{i}_id", f"top{i}_probability")]
        top_p, top_id = probs.topk(top, dim=1)
    rows = []
    for i in range(len(prediction)):
        p = int(prediction[i])
        t = int(target[i])
        row = [int(index[i]), sources[i], t if t >= 0 else "", p, names[p], f"{float(probs[i, p]):.6f}"]
        if per_class:
            row += [f"{v:.6f}" for v in probs[i].tolist()]
        else:
            row += [x for j in range(top) for x in (int(top_id[i, j]), f"{float(top_p[i, j]):.6f}")]
        rows.append(row)
    known = target >= 0
    score = None
    if known.any():
        acc = multiclass_accuracy(prediction[known], target[known], num_classes=k, average="micro")
        score = ("accuracy", float(acc))
    return header, rows, score


def _regression_rows(outputs, index, target):
    x, prediction = outputs["x"].reshape(len(index), -1), outputs["prediction"].reshape(len(index), -1)
    target = target.reshape(len(index), -1)
    rows = [[int(index[i]), f"{float(x[i, 0]):.8g}", f"{float(target[i, 0]):.8g}", f"{float(prediction[i, 0]):.8g}"]
            for i in range(len(index))]
    score = ("mse", float(mean_squared_error(prediction, target.to(prediction.dtype))))
    return ["index", "x", "target", "prediction"], rows, score
