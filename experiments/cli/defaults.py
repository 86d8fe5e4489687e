"""What every run gets unless its config says otherwise: checkpoints, run concerns, progress bar, precision."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from experiments.callbacks import (
    ErrorAnalysis,
    ExperimentTag,
    LoaderPosition,
    MLflowRun,
    NonFiniteLossStop,
    RandomStates,
    RunSummary,
)
from experiments.runs.folder import BEST_PREFIX, LAST_NAME, RunFolder
from experiments.runtime.compute_capability import mixed_precision_for, visible_compute_capabilities

#: how often the progress bar redraws; redrawing every step costs more than a small model's step
PROGRESS_REFRESH_STEPS = 20


def checkpoints(monitor: str, mode: str) -> list[ModelCheckpoint]:
    """The best checkpoint by ``monitor`` and ``last.ckpt`` rewritten after every epoch.

    Two callbacks, because ``ModelCheckpoint(save_last=True)`` in Lightning 2.6 refreshes
    ``last.ckpt`` only when a new best was saved, which would make resuming lose epochs. The last
    one saves at the end of every training epoch (after that epoch's validation, if any): left to
    Lightning's default it would save only when validation runs (every second epoch with
    ``check_val_every_n_epoch: 2``).
    """
    best = ModelCheckpoint(
        monitor=monitor,
        mode=mode,
        save_top_k=1,
        filename=BEST_PREFIX + "epoch{epoch:03d}",
        auto_insert_metric_name=False,
    )
    last = ModelCheckpoint(
        monitor=None,
        save_top_k=1,
        filename=LAST_NAME.removesuffix(".ckpt"),
        enable_version_counter=False,
        save_on_train_epoch_end=True,
    )
    return [best, last]


def run_callbacks(experiment: str, run: RunFolder | None, config: dict[str, Any] | None = None,
                  tags: dict[str, Any] | None = None) -> list[Any]:
    """The run concerns every run gets: random states per rank, the loader's position for a mid-epoch
    resume, the experiment tag, the non-finite stop, the run's summary.json and HPARAMS entry, and its
    MLflow run when an MLFlowLogger is configured (after the summary: it sends the summary's last state), and the
    error analysis of a classification test
    (``config``: the run's flattened config; ``tags``: extra fields such as a sweep's study and trial).
    """
    return [RandomStates(), LoaderPosition(), ExperimentTag(experiment), NonFiniteLossStop(),
            RunSummary(experiment, run, config, tags), MLflowRun(experiment, run, config, tags), ErrorAnalysis(run)]


def precision_on(accelerator: str | None) -> str | None:
    """Mixed precision on a CUDA GPU (bf16 from compute capability 8.0, else fp16); None (Lightning's fp32)
    elsewhere. Decided without initialising CUDA (see :mod:`experiments.runtime.compute_capability`).
    """
    # is_available() does not initialise CUDA: Lightning sets PYTORCH_NVML_BASED_CUDA_CHECK=1 on import
    on_gpu = torch.cuda.is_available() and (accelerator is None or accelerator in ("auto", "gpu", "cuda"))
    if not on_gpu:
        return None
    return mixed_precision_for(visible_compute_capabilities())
