"""SLURM preemption on the CPU: SIGUSR1, Lightning's requeue through a stand-in `scontrol`, and the
requeued job (same SLURM_JOB_ID) continuing the same run into the same TensorBoard version.
"""

from __future__ import annotations

import os
import stat

import pytest
import torch

from tests.helpers import EXPERIMENTS, callback_arg, event_data, run_cli

SMALL = ["--data.train_size", "256", "--data.val_size", "64", "--trainer.max_epochs", "4",
         "--trainer.check_val_every_n_epoch", "1", "--model.lr_scheduler", "null",
         "--model.figure_every_n_epochs", "0", "--trainer.enable_progress_bar", "false"]


def slurm_env(tmp_path, restart_count: int) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    scontrol = bin_dir / "scontrol"
    # what `scontrol requeue` does to the running job: it ends (SLURM kills it; so does this stand-in)
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "scontrol.log"}\nkill -9 $PPID\n')
    scontrol.chmod(scontrol.stat().st_mode | stat.S_IEXEC)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SLURM_JOB_ID": "4242", "SLURM_NTASKS": "1",
            "SLURM_NTASKS_PER_NODE": "1", "SLURM_JOB_NAME": "litexp", "SLURM_PROCID": "0", "SLURM_LOCALID": "0",
            "SLURM_NODEID": "0", "SLURM_NODELIST": "127.0.0.1", "SLURM_RESTART_COUNT": str(restart_count)}


@pytest.mark.slow
def test_a_requeued_job_continues_its_run(tmp_path):
    config = str(EXPERIMENTS / "sin_mlp.yaml")
    straight, cluster = tmp_path / "straight", tmp_path / "cluster"
    straight.mkdir()
    cluster.mkdir()
    run_cli("fit", "-c", config, *SMALL, cwd=straight)
    # SIGUSR1 in the middle of epoch 2 (4 steps per epoch), as SLURM sends it: at any moment
    preempt = "--trainer.callbacks+=" + callback_arg("SignalAtStep", step=9, signum=10)
    first = run_cli("fit", "-c", config, *SMALL, preempt, cwd=cluster, env=slurm_env(tmp_path, 0), check=False)
    assert first.returncode == -9, first.stderr[-3000:]  # ended by the requeue
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"]
    run_dir = cluster / "lightning_logs" / "sin_mlp" / "version_0"
    assert (run_dir / "hpc_ckpt_1.ckpt").is_file() and (run_dir / "slurm_job_id").read_text().strip() == "4242"

    run_cli("fit", "-c", config, *SMALL, preempt, cwd=cluster, env=slurm_env(tmp_path, 1))  # the requeued job
    assert [p.name for p in run_dir.parent.iterdir()] == ["version_0"]  # same run, same TensorBoard version
    scalars, _ = event_data(run_dir)
    assert sorted({int(v) for _, v in scalars["epoch"]}) == [0, 1, 2, 3]
    hpc = torch.load(run_dir / "hpc_ckpt_1.ckpt", weights_only=True)
    assert hpc["global_step"] == 10  # saved at the end of the step the signal arrived in, mid-epoch
    a = torch.load(straight / "lightning_logs/sin_mlp/version_0/checkpoints/last.ckpt", weights_only=True)
    b = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 3 and a["global_step"] == b["global_step"] == 16  # no step lost or repeated
    for key, value in a["state_dict"].items():  # the same batches in the same order: as if never preempted
        assert torch.equal(value, b["state_dict"][key]), key

    # a new job (another id) in the same place is a new run
    run_cli("fit", "-c", config, *SMALL, cwd=cluster, env={**slurm_env(tmp_path, 0), "SLURM_JOB_ID": "4243"})
    assert sorted(p.name for p in run_dir.parent.iterdir()) == ["version_0", "version_1"]
