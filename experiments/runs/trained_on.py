"""Which data a run was trained on, so that ``best``/``last`` and a checkpoint are used on the data they fit.

A folder-trained run records its data in ``data_report.json`` (the resolved root, the CSV when one listed
the files, and the class names). The bundled data sets (MNIST, CIFAR-10, sin(1/x)) are one data set per
experiment and record none: they are not filtered.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from experiments.runs.folder import RunFolder

REPORT = "data_report.json"


def configured_data(init_args: Any, base: str | os.PathLike) -> dict[str, str | None] | None:
    """The data a command is configured with: ``{"root", "csv"}`` resolved against ``base`` (the folder runs
    are started from), or None for a data module without a ``root`` (a bundled data set).
    """
    get = init_args.get if hasattr(init_args, "get") else (lambda key, default=None: default)
    root, csv = get("root"), get("csv")
    if root is None and csv is None:
        return None
    return {"root": _resolved(root, base) if root is not None else None,
            "csv": _resolved(csv, base) if csv else None}


def _resolved(path: str, base: str | os.PathLike) -> str:
    return str((Path(base) / os.path.expanduser(str(path))).resolve())


def recorded_data(run: RunFolder) -> dict[str, Any] | None:
    """What the run's ``data_report.json`` says it was trained on (``root``, ``csv``, ``classes``); None without
    a readable report.
    """
    try:
        report = json.loads((run.path / REPORT).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(report, dict) or not isinstance(report.get("root"), str):
        return None
    classes = report.get("classes")
    return {"root": report["root"], "csv": report.get("csv") if isinstance(report.get("csv"), str) else None,
            "classes": [str(c) for c in classes] if isinstance(classes, list) else None}


def same_data(configured: dict[str, str | None], recorded: dict[str, Any] | None) -> bool:
    """Whether a run trained on ``recorded`` was trained on the ``configured`` data: the same CSV when one is
    configured, else the same root listed by folders.
    """
    if recorded is None:
        return False
    if configured.get("csv"):
        return recorded.get("csv") == configured["csv"]
    return recorded.get("csv") is None and recorded.get("root") == configured.get("root")


def describe(data: dict[str, Any] | None) -> str:
    """``--data.root PATH`` or ``--data.csv PATH`` (or ``unknown data``) for a one-line message."""
    if not data:
        return "unknown data (no data_report.json)"
    return f"--data.csv {data['csv']}" if data.get("csv") else f"--data.root {data.get('root')}"
