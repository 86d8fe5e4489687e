"""CSV metrics inside the run folder: ``<run>/csv/metrics.csv``.

Lightning's CSVLogger with ``save_dir`` the project root would start its own ``lightning_logs/version_K``
beside the experiments, numbered apart from the run's ``version_N``. :class:`RunCSVLogger` takes the same
options and writes into the run folder the CLI places it in (``experiments/presets/csv.yaml``); the CLI
builds it instead of such a CSVLogger.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger
from typing_extensions import override

from experiments.runs.folder import LOGS, RunFolder

CSV_LOGGER = "lightning.pytorch.loggers.CSVLogger"


class RunCSVLogger(CSVLogger):
    """A CSVLogger whose folder is ``<run>/csv`` once :meth:`place` is called (rank zero knows the run)."""

    def __init__(self, save_dir: str = ".", name: str = "lightning_logs", version: int | str | None = None,
                 prefix: str = "", flush_logs_every_n_steps: int = 100) -> None:
        super().__init__(save_dir, name, version, prefix, flush_logs_every_n_steps)
        self.placed: str | None = None

    def place(self, run: RunFolder) -> None:
        """Write the CSV log inside the run folder."""
        self.placed = str(run.path / "csv")

    @property
    @override
    def log_dir(self) -> str:
        return self.placed if self.placed is not None else super().log_dir


def in_run_folder(entry: Any, root: str | os.PathLike) -> None:
    """A config's CSVLogger that would number its own versions inside ``<root>/lightning_logs`` (``name`` and
    ``version`` left at their defaults) becomes a :class:`RunCSVLogger` with the same options.
    """
    init = entry.get("init_args") or {}
    if entry.get("class_path") != CSV_LOGGER or init.get("version") is not None or init.get("save_dir") is None:
        return
    if (Path(init.save_dir) / str(init.get("name"))).resolve() == (Path(root) / LOGS).resolve():
        entry.class_path = f"{RunCSVLogger.__module__}.{RunCSVLogger.__qualname__}"
