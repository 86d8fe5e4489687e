"""After a classification ``test``: ``<run>/analysis/`` (see :mod:`experiments.analysis.errors`) and its figures in
TensorBoard, from the test pass itself (no second pass over the data).

The task's ``test_step`` returns its logits (after test-time augmentation, as scored; under ``tta_flip`` also the
image's alone, for ``tta.csv``); this callback keeps each
sample's probabilities and target, and only the images of the current highest losses (a few dozen, whatever the
size of the test set). Under DDP every rank keeps its shard; rank zero writes the whole. A sample is named by the
data module's ``split_names("test")`` (a folder's relative paths), else by its index in the test split.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from typing_extensions import override

from datamodules.base.ranks import gather_from_ranks
from experiments.analysis.errors import TOP_LOSSES, Answers, write_analysis
from experiments.runs.folder import RunFolder


class ErrorAnalysis(L.Callback):
    """Writes the error analysis of every classification test into the run folder."""

    def __init__(self, run: RunFolder | None, top_losses: int = TOP_LOSSES) -> None:
        self.run = run
        self.top_losses = top_losses
        self._reset()

    def _reset(self) -> None:
        self._probs: list[torch.Tensor] = []
        self._single: list[torch.Tensor] = []  # under tta_flip: the image alone's probabilities
        self._targets: list[torch.Tensor] = []
        self._seen = 0
        self._top: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # losses, positions, images

    @override
    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._reset()

    @override
    def on_test_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        if not isinstance(outputs, dict) or "logits" not in outputs or len(batch) < 2:
            return
        probs = outputs["logits"].detach().float().softmax(1)
        target = batch[1]
        n = len(target)
        positions = torch.arange(self._seen, self._seen + n)
        self._seen += n
        self._probs.append(probs.cpu())
        self._targets.append(target.cpu())
        if "logits_no_tta" in outputs:
            self._single.append(outputs["logits_no_tta"].detach().float().softmax(1).cpu())
        if self.top_losses <= 0:
            return
        # the batch's highest losses against those kept so far: only those images leave the device
        losses = -probs.gather(1, target.view(-1, 1)).flatten().clamp(min=1e-12).log()
        take = torch.argsort(losses, descending=True)[:self.top_losses]
        candidate = (losses[take].cpu(), positions[take.cpu()], batch[0][take].detach().float().cpu())
        if self._top is not None:
            candidate = tuple(torch.cat(pair) for pair in zip(self._top, candidate, strict=True))
        keep = torch.argsort(candidate[0], descending=True, stable=True)[:self.top_losses]
        self._top = tuple(t[keep] for t in candidate)

    @override
    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._probs and not trainer.world_size > 1:
            return
        local = {"probs": torch.cat(self._probs) if self._probs else torch.empty(0),
                 "targets": torch.cat(self._targets) if self._targets else torch.empty(0, dtype=torch.int64),
                 "top": self._top,
                 "single": torch.cat(self._single) if self._single else None}
        parts = gather_from_ranks(local, trainer.strategy)  # collective: every rank
        self._reset()
        if not trainer.is_global_zero or self.run is None or not any(len(p["probs"]) for p in parts):
            return
        datamodule = trainer.datamodule
        names = [str(n) for n in getattr(pl_module, "class_names", [])]
        world = len(parts)
        # the split's position of each rank's k-th answer: strided shards (rank r holds samples r, r + world, ...)
        # unless the data module says otherwise (streamed chunks), then ranks one after another, named by row
        strided = world == 1 or bool(getattr(datamodule, "strided_evaluation", True))
        offsets = torch.tensor([0, *[len(p["targets"]) for p in parts]]).cumsum(0).tolist()
        def position(k: torch.Tensor, r: int) -> torch.Tensor:
            return k * world + r if strided else k + offsets[r]

        index = torch.cat([position(torch.arange(len(p["targets"])), r) for r, p in enumerate(parts)])
        order = torch.argsort(index)
        probs = torch.cat([p["probs"] for p in parts])[order]
        targets = torch.cat([p["targets"] for p in parts])[order]
        single = torch.cat([p["single"] for p in parts])[order] if all(p["single"] is not None for p in parts) \
            else None
        split_names = getattr(datamodule, "split_names", None)
        sources = split_names("test") if callable(split_names) and strided else None
        if sources is None or len(sources) != len(targets):
            sources = [str(i) for i in range(len(targets))]
        if len(names) != probs.shape[1]:
            names = [str(i) for i in range(probs.shape[1])]
        answers = Answers(probs, targets, sources, names)
        top_indices, top_images = self._top_of(parts, position, datamodule)
        drawn = write_analysis(self.run.analysis, answers, top_images, top_indices, single)
        target = pl_module.figure_writer() if hasattr(pl_module, "figure_writer") else None
        if target is not None:
            sinks, step = target
            for name in ("confusion_normalized", "reliability", "top_losses"):
                if name in drawn:
                    sinks.add_image(f"test/{name}", drawn[name], step)

    def _top_of(self, parts: list[dict[str, Any]], position: Callable[[torch.Tensor, int], torch.Tensor],
                datamodule: Any) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The highest-loss images over every rank, in [0, 1], and their positions in the split (which are the
        answers' positions: those are in the split's order).
        """
        kept = [(p["top"], r) for r, p in enumerate(parts) if p["top"] is not None]
        if not kept:
            return None, None
        losses = torch.cat([t[0] for t, _ in kept])
        positions = torch.cat([position(t[1], r) for t, r in kept])
        images = torch.cat([t[2] for t, _ in kept])
        pick = torch.argsort(losses, descending=True, stable=True)[:self.top_losses]
        denormalize = getattr(datamodule, "denormalize", None)
        shown = denormalize(images[pick]) if callable(denormalize) else images[pick]
        return positions[pick], shown.clamp(0, 1)
