"""The study storage shared by ``sweep`` and ``cv``: on SQLite, a queued trial goes to exactly one worker."""

from __future__ import annotations

import collections
import subprocess
import sys
import time

import pytest

from tests.helpers import cli_env

#: a worker: open the storage as sweep and cv do, wait for the common start, take ``n`` trials, print their numbers
WORKER = """
import sys, time, warnings
from pathlib import Path
warnings.simplefilter("ignore")
import optuna
from experiments.sweep.storage import open_storage
optuna.logging.set_verbosity(optuna.logging.ERROR)
db, start, n = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
storage, _, _ = open_storage(f"sqlite:///{db}", Path(db), 30, 120)
study = optuna.load_study(study_name="queue", storage=storage)
while time.time() < start:
    time.sleep(0.001)
print(" ".join(str(study.ask().number) for _ in range(n)))
"""


@pytest.mark.process
def test_four_workers_never_take_the_same_queued_trial_on_sqlite(tmp_path):
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    db = tmp_path / "queue.db"
    study = optuna.create_study(study_name="queue", storage=f"sqlite:///{db}")
    queued, workers = 40, 4
    for i in range(queued):
        study.enqueue_trial({"x": i})
    start = time.time() + 6  # every worker has opened the storage by then, and they ask at once
    processes = [subprocess.Popen([sys.executable, "-c", WORKER, str(db), str(start), str(queued // workers)],
                                  env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(workers)]
    outputs = [p.communicate(timeout=120) for p in processes]
    assert all(p.returncode == 0 for p in processes), [err[-2000:] for _, err in outputs]
    taken = [int(n) for out, _ in outputs for n in out.split()]
    twice = {n: c for n, c in collections.Counter(taken).items() if c > 1}
    assert not twice, f"queued trials handed to more than one worker: {twice}"
    assert sorted(taken) == list(range(queued))  # and every queued trial was taken, none created anew
