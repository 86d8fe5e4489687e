"""SLURM preemption handled at a step every rank reaches together, not inside the signal handler.

Lightning's own auto-requeue saves ``hpc_ckpt_N.ckpt`` from inside the SIGUSR1 handler, on every rank,
wherever each rank happens to be: the save ends with a barrier and this project's checkpoints gather
per-rank state (random streams, augmentation generators), so a rank that takes the signal while
another is inside its backward all-reduce starts a collective the other is not in (a hang under NCCL,
an error or a hang under gloo). Here the handler only notes the request. Every ``check_every_n_steps``
steps, at the end of the training step (the same step on every rank), the ranks agree with one
reduction whether any rank was asked; if so every rank saves ``hpc_ckpt_N.ckpt`` in the normal flow of
training (where its collectives are safe) and rank zero runs ``scontrol requeue``, as Lightning would.
On one device no collective is needed and the save happens at the end of the step the signal fell in.

The CLI turns Lightning's handler off (``SLURMEnvironment(auto_requeue=False)``) and adds this callback
on a SLURM batch job; Lightning still resumes from ``hpc_ckpt_N.ckpt`` when the requeued job starts.
"""

from __future__ import annotations

import logging
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import lightning as L
import torch
from typing_extensions import override

from experiments.runs import slurm

log = logging.getLogger(__name__)

HPC_NAME = re.compile(r"hpc_ckpt_(\d+)\.ckpt$")


def next_hpc_path(folder: str | Path) -> Path:
    """``hpc_ckpt_{N+1}.ckpt`` after the highest ``N`` in ``folder``: the name Lightning resumes from."""
    numbers = [int(m.group(1)) for p in Path(folder).glob("hpc_ckpt_*.ckpt") if (m := HPC_NAME.search(p.name))]
    return Path(folder) / f"hpc_ckpt_{max(numbers, default=0) + 1}.ckpt"


class Preemption(L.Callback):
    """Save and requeue on ``requeue_signal`` at the next step all ranks agree on (see the module)."""

    def __init__(self, check_every_n_steps: int = 10, requeue_signal: int = signal.SIGUSR1) -> None:
        if check_every_n_steps < 1:
            raise ValueError(f"check_every_n_steps must be >= 1, got {check_every_n_steps}")
        self.check_every_n_steps = check_every_n_steps
        self.requeue_signal = requeue_signal
        self.requested = False
        self.saved: Path | None = None
        self._previous: Any = None

    def _note(self, signum: int, frame: Any) -> None:  # the handler: no I/O, no collective
        self.requested = True

    @override
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._previous = signal.signal(self.requeue_signal, self._note)

    @override
    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()

    @override
    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore()

    def _restore(self) -> None:
        if self._previous is not None:
            signal.signal(self.requeue_signal, self._previous)
            self._previous = None

    @override
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.saved is not None:
            return
        if trainer.world_size == 1:
            asked = self.requested
        elif trainer.global_step % self.check_every_n_steps == 0:  # the same steps on every rank
            flag = torch.tensor(float(self.requested), device=pl_module.device)
            asked = bool(trainer.strategy.reduce(flag, reduce_op="max") > 0)
        else:
            return
        if asked:
            self._save_and_requeue(trainer)

    def _save_and_requeue(self, trainer: L.Trainer) -> None:
        path = next_hpc_path(trainer.default_root_dir) if trainer.is_global_zero else None
        path = trainer.strategy.broadcast(path)  # one name on every rank
        for logger in trainer.loggers:
            logger.save()
        # every rank: the per-rank state is gathered here, in step with the others
        trainer.save_checkpoint(path, weights_only=False)
        self.saved = Path(path)
        if not trainer.is_global_zero:
            return
        job = slurm.slurm_job_id()
        if job is None:
            return
        log.info(f"requeueing SLURM job {job} after saving {path}")
        result = subprocess.run(["scontrol", "requeue", job], check=False)
        if result.returncode != 0:
            log.warning(f"scontrol requeue {job} failed with exit code {result.returncode}; training goes on")
