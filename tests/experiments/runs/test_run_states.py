"""``runs`` lists every run whatever its summary holds: a damaged one is ``unreadable`` with what is wrong,
Ctrl-C is ``interrupted``, a vanished process ``killed`` with that reason; and the other experiments'
runs are still listed.
"""

from __future__ import annotations

import json

from experiments.runs.table import collect

GOOD = {"state": "finished", "monitor": "val/mse", "mode": "min", "epochs": 3,
        "best": {"metric": "val/mse", "value": 0.1, "epoch": 2}}


def _write(root, experiment: str, version: int, text: str) -> None:
    folder = root / "lightning_logs" / experiment / f"version_{version}"
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("seed_everything: 1\n")
    (folder / "summary.json").write_text(text)


def test_every_summary_gives_a_row(tmp_path):
    _write(tmp_path, "sin_mlp", 0, json.dumps(GOOD))
    _write(tmp_path, "sin_mlp", 1, "[1, 2, 3]")
    _write(tmp_path, "sin_mlp", 2, json.dumps({**GOOD, "best": "x"}))
    _write(tmp_path, "sin_mlp", 3, json.dumps(GOOD)[:40])  # cut short by a damaged disk
    _write(tmp_path, "sin_mlp", 4, json.dumps({**GOOD, "state": "interrupted", "reason": "interrupted"}))
    _write(tmp_path, "sin_mlp", 5, json.dumps({**GOOD, "best": {"value": "0.1"}, "epochs": "3"}))
    _write(tmp_path, "sin_mlp", 6, json.dumps({**GOOD, "state": "running", "pid": 2**22 + 7, "host": "elsewhere"}))
    _write(tmp_path, "mnist_mlp", 0, json.dumps({**GOOD, "mode": "max"}))
    records = {(r["experiment"], r["version"]): r for r in collect(tmp_path, None)}
    assert len(records) == 8
    states = {version: records["sin_mlp", version]["state"] for version in range(7)}
    assert states == {0: "finished", 1: "unreadable", 2: "unreadable", 3: "unreadable", 4: "interrupted",
                      5: "unreadable", 6: "running"}  # 6: on another host, its process cannot be checked
    assert records["sin_mlp", 1]["reason"] == "summary.json holds a JSON list, not an object"
    assert records["sin_mlp", 2]["reason"] == "summary.json best is 'x', not dict"
    assert records["sin_mlp", 3]["reason"].startswith("summary.json is not valid JSON")
    assert records["sin_mlp", 5]["reason"] == "summary.json epochs is '3', not int"
    assert records["sin_mlp", 0]["best_value"] == 0.1 and records["sin_mlp", 2]["best_value"] is None
    assert records["mnist_mlp", 0]["state"] == "finished"


def test_a_vanished_process_is_killed_with_the_reason(tmp_path):
    import socket
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=30)
    _write(tmp_path, "sin_mlp", 0, json.dumps({**GOOD, "state": "running", "pid": dead.pid,
                                               "host": socket.gethostname()}))
    (record,) = collect(tmp_path, "sin_mlp")
    assert record["state"] == "killed" and f"process {dead.pid}" in record["reason"]
