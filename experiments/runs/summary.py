"""``summary.json``: the schema of a run's summary, read and written here alone.

The summary is what ``runs`` lists and what ``best`` and sweeps can trust without opening a
checkpoint. Its fields (every one optional to a reader: a run killed early has few):

- ``experiment``, ``version``, ``started``, ``updated``, ``finished`` (ISO times), ``host``, ``pid``
- ``state``: ``running`` | ``finished`` | ``stopped early`` | ``failed`` | ``killed``; ``reason`` why it ended
- ``monitor`` (``val/acc``, ``val/mse``) and ``mode`` (``max`` | ``min``): the metric checkpoints follow
- ``best``: ``{"metric", "value", "epoch"}``; ``last_val``: ``{monitor: value}`` of the last validation
- ``epochs``, ``global_step``, ``max_epochs``, ``wall_time_s``, ``seed``, ``resumed``
- ``test``: ``{"metrics": {...}, "checkpoint", "at"}`` of the latest test on the run
- ``hparams_logged``; and extra fields a caller adds (a sweep's ``study`` and ``trial``)
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from experiments.files import write_atomically
from experiments.runs.folder import RunFolder


def read_summary(run: RunFolder) -> dict[str, Any]:
    """The run's summary, or ``{}`` when it has none or it cannot be read as a JSON object."""
    try:
        summary = json.loads(run.summary.read_text())
    except (OSError, ValueError):
        return {}
    return summary if isinstance(summary, dict) else {}


def write_summary(run: RunFolder, summary: dict[str, Any]) -> None:
    write_atomically(run.summary, json.dumps(summary, indent=2, sort_keys=True) + "\n")


def now_iso() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def test_metric(monitor: str) -> str:
    """The test counterpart of a monitored validation metric (``val/acc`` -> ``test/acc``)."""
    return monitor.replace("val/", "test/", 1)
