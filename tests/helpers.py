"""Shared helpers: run the real CLI, read what a run wrote."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"


def run_cli(*args: str, cwd: Path, timeout: float = 300, env: dict | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
    """``python -m experiments ARGS`` in a fresh process, working in ``cwd``."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **(env or {})}
    result = subprocess.run(
        [sys.executable, "-m", "experiments", *args],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"CLI failed ({result.returncode}): {' '.join(args)}\n--- stdout\n{result.stdout[-3000:]}"
            f"\n--- stderr\n{result.stderr[-5000:]}"
        )
    return result


def event_data(run_dir: Path) -> tuple[dict[str, list], list[str]]:
    """Scalars ({tag: [(step, value)]}) and image tags from every event file of a run folder."""
    scalars: dict[str, list] = {}
    images: list[str] = []
    for event_file in sorted(run_dir.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(event_file), size_guidance={"scalars": 0, "images": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
        images.extend(acc.Tags()["images"])
    return scalars, images
