"""SLURM preemption: a requeued job continues its own run, in its own TensorBoard version.

On the signal that ``#SBATCH --signal=SIGUSR1@90`` asks for, the ``Preemption`` callback saves
``hpc_ckpt_N.ckpt`` into the Trainer's ``default_root_dir`` at a step every rank agrees on and runs
``scontrol requeue`` (Lightning's own handler, which saves from inside the signal handler, is turned
off); a process started on SLURM finds that file there and Lightning resumes from it. The CLI points
``default_root_dir`` at the run folder, so that file lives with the run, and records the job id in the
run folder, so the requeued job (same id, ``SLURM_RESTART_COUNT`` > 0) finds the run instead of
claiming a new version.
"""

from __future__ import annotations

import os

from lightning.fabric.plugins.environments import SLURMEnvironment

from experiments.runs.folder import ExperimentFolder, RunFolder


def slurm_job_id() -> str | None:
    """The id ``scontrol requeue`` is given (``ARRAYID_TASKID`` in a job array), on a SLURM batch job."""
    if not SLURMEnvironment.detect():
        return None
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array is not None:
        return f"{array}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
    return os.environ.get("SLURM_JOB_ID")


def is_requeued() -> bool:
    """Whether SLURM started this job again (``SLURM_RESTART_COUNT`` > 0)."""
    try:
        return int(os.environ.get("SLURM_RESTART_COUNT", "0")) > 0
    except ValueError:
        return False


def record_job(run: RunFolder) -> None:
    """Write this job's id into a run folder it just claimed (no-op outside SLURM)."""
    job = slurm_job_id()
    if job is not None:
        run.slurm_job.write_text(job + "\n")


def requeued_run(experiment: ExperimentFolder) -> RunFolder | None:
    """The run this requeued job was running, if it is one; the newest if several match."""
    job = slurm_job_id()
    if job is None or not is_requeued():
        return None
    for run in reversed(experiment.runs()):
        if run.slurm_job.is_file() and run.slurm_job.read_text().strip() == job:
            return run
    return None
