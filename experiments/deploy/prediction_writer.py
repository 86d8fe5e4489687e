"""``predict`` writes its results: ``<run>/predictions/<source>.csv`` and ``<source>.pt``.

Lightning's ``predict`` returns the outputs and LightningCLI drops them. This writer keeps each
batch's outputs (on the CPU), gathers them from every rank when the epoch ends, puts the rows back
in sample order (each rank predicted a disjoint shard) and writes one table a person can read and
one ``.pt`` file a program can load. When the samples carry labels it also says the accuracy (or
MSE), computed with torchmetrics exactly as ``test`` computes it. The columns follow the task's
inference contract (:mod:`lit_models.inference`): its output's name, kind and labels.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torchmetrics.functional.classification import multiclass_accuracy
from torchmetrics.functional.regression import mean_squared_error
from typing_extensions import override

from datamodules.base.ranks import gather_from_ranks
from experiments.files import write_atomically
from experiments.runs.folder import RunFolder
from lit_models.inference import Inference

#: up to this many classes the table has a probability column per class; beyond, the top five
MAX_CLASS_COLUMNS = 20
TOP_K = 5


class PredictionWriter(BasePredictionWriter):
    """Writes the outputs of ``predict_step`` (dicts of tensors) as a CSV table and a ``.pt`` file.

    ``output_dir`` defaults to the run folder's ``predictions/`` (``run``, handed over by the CLI; without
    one, ``<default_root_dir>/predictions``). The data module is asked (duck-typed) for ``predict_source``
    (the file stem) and ``predict_names`` (a name per sample, e.g. file names).
    """

    def __init__(self, output_dir: str | None = None, run: RunFolder | None = None, verbose: bool = True) -> None:
        super().__init__(write_interval="batch_and_epoch")
        self.output_dir = output_dir
        self.verbose = verbose
        self.run = run
        self._outputs: list[dict[str, torch.Tensor]] = []
        #: paths of the last files written, and the score printed with them (for callers and tests)
        self.written: dict[str, Path] = {}
        self.score: tuple[str, float] | None = None

    @override
    def on_predict_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._outputs.clear()

    @override
    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        if isinstance(prediction, dict):
            self._outputs.append({k: v.detach().cpu() for k, v in prediction.items() if isinstance(v, torch.Tensor)})

    @override
    def write_on_epoch_end(self, trainer: Any, pl_module: Any, predictions: Any, batch_indices: Any) -> None:
        local = {key: torch.cat([o[key] for o in self._outputs]) for key in self._outputs[0]} if self._outputs else {}
        self._outputs.clear()
        parts = [p for p in gather_from_ranks(local, trainer.strategy) if p]  # collective: every rank
        if not trainer.is_global_zero or not parts:
            return
        merged = {key: torch.cat([p[key] for p in parts]) for key in parts[0]}
        if "index" in merged:  # rank r predicted samples r, r + world_size, ...: back to sample order
            order = merged["index"].argsort()
            merged = {key: value[order] for key, value in merged.items()}
        datamodule = trainer.datamodule
        source = str(getattr(datamodule, "predict_source", "predict"))
        if self.output_dir:
            out_dir = Path(self.output_dir)
        else:
            out_dir = self.run.predictions if self.run is not None else Path(trainer.default_root_dir) / "predictions"
        names = getattr(datamodule, "predict_names", None)
        origin = getattr(datamodule, "predict_dir", None)
        if origin:  # two folders of one name (a/test, b/test) each get their own table
            source = claim_stem(out_dir, source, str(Path(origin).resolve()))
        shipped = pl_module.inference(datamodule)
        self.written, self.score = write_predictions(merged, out_dir, source, names, shipped)
        if origin and shipped.output_kind == "probabilities":
            self._analyse(merged, names, shipped, datamodule, out_dir, source)
        shown = f"; {self.score[0]} = {self.score[1]:.6g}" if self.score else ""
        n = len(next(iter(merged.values())))
        if self.verbose:
            print(f"Predictions: {self.written['csv']} ({n} rows{shown})")


    def _analyse(self, merged: dict[str, torch.Tensor], names: list[str] | None, shipped: Inference, datamodule: Any,
                 out_dir: Path, source: str) -> None:
        """A labelled folder (every image in a class sub-folder) gets the error analysis a test gets, in
        ``<run>/analysis/<source>/``: the images of the highest losses shown as read (before normalisation).
        """
        from experiments.analysis.errors import TOP_LOSSES, Answers, top_loss_indices, write_analysis

        target = merged.get("target")
        if target is None or not len(target) or bool((target < 0).any()):
            return
        index = merged.get("index", torch.arange(len(target)))
        sources = names if names is not None else [str(int(i)) for i in index]
        answers = Answers(merged[shipped.output_name], target, list(sources), list(shipped.labels),
                          merged.get("prediction"))
        top = top_loss_indices(answers, TOP_LOSSES)
        images = datamodule.predict_tensors()[0][index[top]] if hasattr(datamodule, "predict_tensors") else None
        if images is not None:
            images = (images.unsqueeze(1) if images.dim() == 3 else images).float() / 255
        folder = (self.run.analysis if self.run is not None else out_dir.parent / "analysis") / source
        write_analysis(folder, answers, images, top if images is not None else None)
        print(f"Analysis: {folder} (per_class.csv, misclassified.csv, confusion, reliability, top losses)")


#: ``predictions/sources.json``: which folder each table's stem was written for
SOURCES = "sources.json"


def claim_stem(out_dir: Path, stem: str, origin: str) -> str:
    """The file stem for predictions of the folder ``origin``: ``stem`` (the folder's name) unless another folder
    of that name already has it in ``out_dir``, then ``stem-2``, ``stem-3``, ...; the folder that had a stem keeps
    it, so predicting it again replaces its own table. Recorded in ``sources.json``.
    """
    record = out_dir / SOURCES
    try:
        claimed = json.loads(record.read_text())
        claimed = claimed if isinstance(claimed, dict) else {}
    except (OSError, ValueError):
        claimed = {}
    for candidate in itertools.chain([stem], (f"{stem}-{n}" for n in itertools.count(2))):
        owner = claimed.get(candidate)
        if owner == origin:
            return candidate
        # unclaimed: the plain name (a table from before the record is this folder's, as it always was), or a
        # numbered one no file has
        if owner is None and (candidate == stem or not (out_dir / f"{candidate}.csv").exists()):
            out_dir.mkdir(parents=True, exist_ok=True)
            write_atomically(record, json.dumps({**claimed, candidate: origin}, indent=2, sort_keys=True) + "\n")
            return candidate
    raise AssertionError("unreachable: the numbered stems never run out")


def write_predictions(outputs: dict[str, torch.Tensor], out_dir: Path, source: str, names: list[str] | None,
                      shipped: Inference) -> tuple[dict[str, Path], tuple[str, float] | None]:
    """Write ``<source>.csv`` and ``<source>.pt`` into ``out_dir`` (each written whole or not at all, so an
    interrupted run leaves no half-written table); return their paths and the score.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    n = len(outputs[shipped.output_name])
    index = outputs.get("index", torch.arange(n))
    sources = names if names is not None else [str(int(i)) for i in index]
    if shipped.output_kind == "probabilities":
        target = outputs.get("target", torch.full((n,), -1))
        probs = outputs[shipped.output_name]
        prediction = outputs.get("prediction", probs.argmax(1))  # the task's own arg-max (of its logits)
        header, rows, score = _classification_rows(probs, prediction, index, target, sources, shipped.labels)
        saved = {**outputs, "target": target, "class_names": list(shipped.labels)}
    else:
        header, rows, score = _value_rows(outputs, index, shipped, sources if names is not None else None)
        saved = {**outputs, "labels": list(shipped.labels)}
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(rows)
    csv_path, pt_path = out_dir / f"{source}.csv", out_dir / f"{source}.pt"
    write_atomically(csv_path, text.getvalue())
    write_atomically(pt_path, lambda f: torch.save({**saved, "index": index, "source": sources}, f))
    return {"csv": csv_path, "pt": pt_path}, score


def _classification_rows(probs, prediction, index, target, sources, class_names):
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


def _columns(name: str, values: torch.Tensor, labels: list[str]) -> tuple[list[str], torch.Tensor]:
    """A (N, ...) tensor as named columns: ``name`` for one value per sample, ``name_<label>`` for more."""
    flat = values.reshape(len(values), -1)
    if flat.shape[1] == 1:
        return [name], flat
    suffixes = labels if len(labels) == flat.shape[1] else [str(i) for i in range(flat.shape[1])]
    return [f"{name}_{s}" for s in suffixes], flat


def _value_rows(outputs, index, shipped: Inference, sources: list[str] | None):
    """Numbers per sample: the input (when ``predict_step`` returns it), the target (when known), the answer."""
    prediction = outputs[shipped.output_name]
    header, blocks = ["index"], []
    if sources is not None:
        header.append("source")
    for key, labels in ((shipped.input_name, []), ("target", shipped.labels), (shipped.output_name, shipped.labels)):
        if key in outputs:
            names, values = _columns(key, outputs[key], labels)
            header += names
            blocks.append(values.float())
    table = torch.cat(blocks, dim=1) if blocks else torch.empty(len(index), 0)
    rows = [[int(index[i]), *([sources[i]] if sources is not None else []), *(f"{v:.8g}" for v in table[i].tolist())]
            for i in range(len(index))]
    target = outputs.get("target")
    score = None
    if target is not None and target.numel() == prediction.numel():
        score = ("mse", float(mean_squared_error(prediction.reshape(target.shape).float(), target.float())))
    return header, rows, score
