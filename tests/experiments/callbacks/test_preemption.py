"""SLURM preemption on 2 CPU ranks: SIGUSR1 reaches each rank at a different step; the ranks agree on one
later step, save once there (per-rank state gathered in step with each other), requeue once, and the job
finishes without a hang.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest
import torch

from experiments.callbacks.preemption import next_hpc_path
from tests.helpers import EXPERIMENTS, callback_arg, cli_env
from tests.servers import free_port


def test_next_hpc_path_follows_lightning_s_names(tmp_path):
    assert next_hpc_path(tmp_path).name == "hpc_ckpt_1.ckpt"
    (tmp_path / "hpc_ckpt_1.ckpt").write_bytes(b"")
    (tmp_path / "hpc_ckpt_7.ckpt").write_bytes(b"")
    assert next_hpc_path(tmp_path).name == "hpc_ckpt_8.ckpt"


@pytest.mark.slow
def test_two_ranks_signalled_at_different_steps_save_once_together(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "scontrol.log"}\n')  # logs; the job goes on
    scontrol.chmod(scontrol.stat().st_mode | stat.S_IEXEC)
    port = str(free_port())
    args = [sys.executable, "-m", "experiments", "fit", "-c", str(EXPERIMENTS / "sin_mlp.yaml"),
            "--data.train_size", "2560", "--data.val_size", "64", "--trainer.max_epochs", "2",
            "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
            "--model.lr_scheduler", "null", "--model.figure_every_n_epochs", "0",
            "--trainer.enable_progress_bar", "false",
            "--trainer.callbacks+=" + callback_arg("SignalOnRankAtStep", steps=[3, 7], signum=10)]
    processes, logs = [], []
    for rank in (0, 1):
        env = cli_env({"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SLURM_JOB_ID": "4242",
                       "SLURM_JOB_NAME": "litexp", "SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "2",
                       "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank), "SLURM_NODEID": "0",
                       "SLURM_NODELIST": "127.0.0.1", "SLURM_RESTART_COUNT": "0", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": port})
        logs.append(open(tmp_path / f"rank{rank}.log", "w"))
        processes.append(subprocess.Popen(args, cwd=tmp_path, env=env, stdout=logs[-1], stderr=subprocess.STDOUT))
    try:
        codes = [p.wait(timeout=300) for p in processes]  # a hang fails here
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
        for f in logs:
            f.close()
    assert codes == [0, 0], (tmp_path / "rank0.log").read_text()[-3000:] + (tmp_path / "rank1.log").read_text()[-3000:]
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"]
    run = tmp_path / "lightning_logs" / "sin_mlp" / "version_0"
    assert sorted(p.name for p in run.glob("hpc_ckpt_*.ckpt")) == ["hpc_ckpt_1.ckpt"]
    saved = torch.load(run / "hpc_ckpt_1.ckpt", weights_only=False)
    assert saved["global_step"] == 10  # the first agreed check after the first signal (every 10 steps)
    streams = next(v for k, v in saved["callbacks"].items() if k.startswith("RandomStates"))
    assert len(streams["ranks"]) == 2  # both ranks' streams, gathered in step
