"""The runs command lists what each run reached, what differed, and runs that were killed or left no summary."""

from __future__ import annotations

import csv
import json
import socket
import subprocess
import sys

from tests.experiments.trained_runs import one_error_line
from tests.helpers import run_cli


def test_runs_lists_what_each_run_reached_and_what_differed(trained):
    table = run_cli("runs", "sin_mlp", cwd=trained).stdout.splitlines()
    header = table[0].split()
    assert header[:4] == ["experiment", "version", "started", "state"] and header[-1] == "max_lr"
    rows = [line.split() for line in table[1:]]
    assert [r[1] for r in rows] == ["0", "1"] and all("finished" in line for line in table[1:])
    assert [r[-1] for r in rows] == ["0.005", "0.02"]
    listed = list(csv.DictReader(run_cli("runs", "sin_mlp", "--csv", "--sort", "best", cwd=trained).stdout
                                 .splitlines()))
    best = [float(r["best_value"]) for r in listed]
    assert best == sorted(best) and all(r["best_metric"] == "val/mse" for r in listed)  # mse: lowest first
    summaries = [json.loads((trained / f"lightning_logs/sin_mlp/version_{r['version']}/summary.json").read_text())
                 for r in listed]
    assert [s["best"]["value"] for s in summaries] == best and all(s["epochs"] == 2 for s in summaries)


def test_runs_lists_killed_runs_and_runs_without_a_summary(trained, tmp_path):
    exp = tmp_path / "lightning_logs/sin_mlp"
    source = trained / "lightning_logs/sin_mlp/version_0"
    for version in (0, 1):
        (exp / f"version_{version}").mkdir(parents=True)
        (exp / f"version_{version}/config.yaml").write_text((source / "config.yaml").read_text())
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=30)
    summary = json.loads((source / "summary.json").read_text())
    summary.update(state="running", pid=dead.pid, host=socket.gethostname())
    (exp / "version_0/summary.json").write_text(json.dumps(summary))
    listed = list(csv.DictReader(run_cli("runs", "--csv", "--root", str(tmp_path), cwd=trained).stdout.splitlines()))
    assert [(r["version"], r["state"]) for r in listed] == [("0", "killed"), ("1", "failed")]
    line = one_error_line(run_cli("runs", "nothing_here", cwd=trained, check=False))
    assert "no runs under" in line and "nothing_here" in line


