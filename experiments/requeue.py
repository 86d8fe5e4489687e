"""SLURM preemption: a requeued job continues its own run, in its own TensorBoard version.

Lightning does the rest (``SLURMEnvironment(auto_requeue=True)``): on the signal that
``#SBATCH --signal=SIGUSR1@90`` asks for, it saves ``hpc_ckpt_N.ckpt`` into the Trainer's
``default_root_dir`` and runs ``scontrol requeue``; a process started on SLURM finds that file there
and resumes from it. The CLI points ``default_root_dir`` at the run folder, so that file lives with
the run, and records the job id in the run folder, so the requeued job (same id,
``SLURM_RESTART_COUNT`` > 0) finds the run instead of claiming a new version.
"""

from __future__ import annotations

import os
from pathlib import Path

from lightning.fabric.plugins.environments import SLURMEnvironment

from experiments.runs import versions

JOB_FILE = "slurm_job_id"


def slurm_job_id() -> str | None:
    """The id ``scontrol requeue`` is given (``ARRAYID_TASKID`` in a job array), on a SLURM batch job."""
    if not SLURMEnvironment.detect():
        return None
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array is not None:
        return f"{array}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
    return os.environ.get("SLURM_JOB_ID")


def is_requeued() -> bool:
    try:
        return int(os.environ.get("SLURM_RESTART_COUNT", "0")) > 0
    except ValueError:
        return False


def record_job(run_dir: Path) -> None:
    """Write this job's id into a run folder it just claimed (no-op outside SLURM)."""
    job = slurm_job_id()
    if job is not None:
        (run_dir / JOB_FILE).write_text(job + "\n")


def requeued_run(exp_dir: Path) -> int | None:
    """The version this requeued job was running, if it is one; the newest if several match."""
    job = slurm_job_id()
    if job is None or not is_requeued():
        return None
    for version in reversed(versions(exp_dir)):
        marker = exp_dir / f"version_{version}" / JOB_FILE
        if marker.is_file() and marker.read_text().strip() == job:
            return version
    return None
