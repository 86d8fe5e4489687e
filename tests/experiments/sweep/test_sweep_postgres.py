"""Sweeps on a real PostgreSQL server (tests/postgres.py): two workers on one study, one SIGKILLed mid-trial, its
trial failed by the heartbeat and retried once by the other; a wrong password or a missing driver is one line.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.experiments.sweep.test_sweep_command import SIN, runs_of, sweep_file
from tests.experiments.trained_runs import one_error_line
from tests.helpers import callback_arg, cli_env, run_cli
from tests.postgres import create_database, postgres_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def postgres():
    with postgres_server() as server:
        yield server


def running_trial_of(study, pid: int):
    from optuna.trial import TrialState

    return next((t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                 if t.user_attrs.get("pid") == pid), None)


def test_two_workers_a_sigkill_and_the_heartbeat_retry_finish_exactly_n_trials(tmp_path, postgres):
    import optuna

    url = create_database(*postgres, "heartbeat")
    # each trial lasts > 3 s (three 1-s epochs), longer than the grace period: the killed worker's trial is stale
    # by the time the other worker starts its next trial, which fails it and queues its retry
    args = [sys.executable, "-m", "experiments", "sweep", *SIN, "--sweep", str(sweep_file(tmp_path, n_trials=3)),
            "--storage", url, "--heartbeat_interval", "1", "--grace_period", "2",
            "--trainer.callbacks+=" + callback_arg("SleepPerEpoch", seconds=1.0)]
    workers = [subprocess.Popen(args, cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True) for _ in range(2)]
    victim, survivor = workers
    try:
        # a running trial of the first worker that has suggested its parameters (a trial is created, and so
        # seen running, before it suggests any: a loaded machine can stretch that gap past one poll)
        deadline, killed = time.monotonic() + 180, None
        while (killed is None or not killed.params) and time.monotonic() < deadline:
            assert victim.poll() is None, victim.communicate()
            try:
                study = optuna.load_study(study_name="sweep", storage=url)
                killed = running_trial_of(study, victim.pid)
            except KeyError:  # the study is not created yet
                pass
            time.sleep(0.2)
        assert killed is not None and killed.params, "the first worker never started a trial"
        # past its first heartbeat (interval 1 s): Optuna judges staleness from the last heartbeat, and a trial
        # killed before it wrote one is never failed by a heartbeat check (only by a restart on its host)
        time.sleep(1.5)
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
        out, err = survivor.communicate(timeout=600)
    finally:
        for worker in workers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(timeout=30)
    assert survivor.returncode == 0, err[-3000:]
    assert "litexp:" in out and password_free(out, postgres[2])  # the URL printed without its password

    trials = optuna.load_study(study_name="sweep", storage=url).get_trials(deepcopy=False)
    states = [t.state.name for t in trials]
    assert states.count("COMPLETE") == 3 and states.count("FAIL") == 1 and len(states) == 4, states
    failed = next(t for t in trials if t.state.name == "FAIL")
    assert failed.number == killed.number and failed.params  # the failed trial as finally stored
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retries) == 1 and retries[0].state.name == "COMPLETE" and retries[0].params == failed.params
    printed = [line.split(":")[0] for line in out.splitlines() if re.match(r"trial \d+: complete", line)]
    assert len(printed) == 3 and len(set(printed)) == 3  # no trial run twice
    for trial in (t for t in trials if t.state.name == "COMPLETE"):
        run = trial.user_attrs["run"]
        summary = (tmp_path / run / "summary.json").read_text()
        assert '"state": "finished"' in summary, run
        assert (tmp_path / run / "config.yaml").is_file() and (tmp_path / run / "checkpoints/last.ckpt").is_file()
    finished = {t.user_attrs["run"] for t in trials if t.state.name == "COMPLETE"}
    # three finished runs, and the killed one's when it got as far as making its folder before the SIGKILL
    assert len(finished) == 3 and len(runs_of(tmp_path)) in (3, 4)


def password_free(text: str, password: str) -> bool:
    return password not in text


def test_a_wrong_password_and_a_missing_driver_are_one_line_and_create_nothing(tmp_path, postgres):
    host, port, password = postgres
    create_database(host, port, password, "refused")
    wrong = f"postgresql://litexp:not-{password}@{host}:{port}/refused"
    line = one_error_line(run_cli("sweep", *SIN, "--sweep", str(sweep_file(tmp_path)), "--storage", wrong,
                                  cwd=tmp_path, check=False))
    assert "--storage postgresql://litexp:***@" in line and "password authentication failed" in line
    assert f"not-{password}" not in line
    missing = f"postgresql+pg8000://litexp:{password}@{host}:{port}/refused"
    line = one_error_line(run_cli("sweep", *SIN, "--sweep", str(sweep_file(tmp_path)), "--storage", missing,
                                  cwd=tmp_path, check=False))
    assert "pip install 'pg8000'" in line and password not in line
    assert not (tmp_path / "lightning_logs").exists()
