"""``summary.json``: the schema of a run's summary, read and written here alone.

The summary is what ``runs`` lists and what ``best`` and sweeps can trust without opening a
checkpoint. Its fields (every one optional to a reader: a run killed early has few):

- ``experiment``, ``version``, ``started``, ``updated``, ``finished`` (ISO times), ``host``, ``pid``
- ``state``: ``running`` | ``finished`` | ``stopped early`` | ``failed`` | ``interrupted`` (Ctrl-C, SIGTERM);
  ``reason`` why it ended. ``runs`` shows a ``running`` run whose process is gone as ``killed``, and a
  summary that does not fit this schema as ``unreadable`` (with what is wrong)
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

_NUMBER = (int, float)
_FIELDS: dict[str, tuple[type, ...]] = {
    "experiment": (str,), "version": (int,), "started": (str,), "updated": (str,), "finished": (str,),
    "host": (str,), "pid": (int,), "state": (str,), "reason": (str,), "monitor": (str,), "mode": (str,),
    "best": (dict,), "last_val": (dict,), "epochs": (int,), "global_step": (int,), "max_epochs": (int,),
    "wall_time_s": _NUMBER, "seed": (int,), "resumed": (bool,), "test": (dict,), "hparams_logged": (bool,),
}


def schema_problem(summary: Any) -> str | None:
    """What makes ``summary`` not a summary of this schema (None: it is one; absent fields are fine)."""
    if not isinstance(summary, dict):
        return f"holds a JSON {type(summary).__name__}, not an object"
    for key, kinds in _FIELDS.items():
        value = summary.get(key)
        if value is not None and (not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)):
            return f"{key} is {value!r}, not {' or '.join(k.__name__ for k in kinds)}"
    best = summary.get("best") or {}
    if best.get("value") is not None and (not isinstance(best["value"], _NUMBER) or isinstance(best["value"], bool)):
        return f"best.value is {best['value']!r}, not a number"
    if summary.get("mode") not in (None, "min", "max"):
        return f"mode is {summary['mode']!r}, not min or max"
    metrics = (summary.get("test") or {}).get("metrics") or {}
    if not isinstance(metrics, dict) or not all(isinstance(v, _NUMBER) for v in metrics.values()):
        return "test.metrics is not an object of numbers"
    return None


def load_summary(run: RunFolder) -> tuple[dict[str, Any], str | None]:
    """``(summary, problem)``: ``({}, None)`` without a file; ``({}, what is wrong)`` when it cannot be read or
    does not fit the schema (a damaged file is never trusted in part).
    """
    try:
        text = run.summary.read_text()
    except FileNotFoundError:
        return {}, None
    except OSError as err:
        return {}, f"summary.json cannot be read ({err.strerror or err})"
    try:
        summary = json.loads(text)
    except ValueError as err:
        return {}, f"summary.json is not valid JSON ({err})"
    problem = schema_problem(summary)
    return (summary, None) if problem is None else ({}, f"summary.json {problem}")


def read_summary(run: RunFolder) -> dict[str, Any]:
    """The run's summary, or ``{}`` when it has none, or one that cannot be read or does not fit the schema."""
    return load_summary(run)[0]


def write_summary(run: RunFolder, summary: dict[str, Any]) -> None:
    """Write a run's ``summary.json`` whole or not at all."""
    write_atomically(run.summary, json.dumps(summary, indent=2, sort_keys=True) + "\n")


def now_iso() -> str:
    """The local time now, ISO 8601 with its offset, to the second."""
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def test_metric(monitor: str) -> str:
    """The test counterpart of a monitored validation metric (``val/acc`` -> ``test/acc``)."""
    return monitor.replace("val/", "test/", 1)
