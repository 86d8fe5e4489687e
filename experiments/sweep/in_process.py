"""Runs trained one after another in this process (a sweep's trials, a cross-validation's folds): the options each
gets, quiet logs while it runs, its memory given back after it, and its best monitored value.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

#: options each run gets unless the user set them: one line per run, not a page of progress bars, and one device
#: (Lightning's DDP launcher would start this whole command again on every other device: scale out with one
#: worker per device on the same study instead)
QUIET_RUN = {"--trainer.enable_progress_bar": "false", "--trainer.enable_model_summary": "false",
             "--trainer.devices": "1"}


def given(option: str, args: list[str]) -> bool:
    """Whether ``args`` set ``option`` (``--x v`` or ``--x=v``)."""
    return any(t == option or t.startswith(option + "=") for t in args)


def quiet_args(args: list[str]) -> list[str]:
    """``args`` with :data:`QUIET_RUN`'s options added where the user did not set them."""
    extra = [token for option, value in QUIET_RUN.items() if not given(option, args) for token in (option, value)]
    return [*args, *extra]


def freeze_heap() -> None:
    """Leave what is alive now (modules, parsers, the study) out of later collections (``gc.freeze``).

    Each run ends with a full collection, which releases the cycles a Trainer and its module form (the memory of
    the next run); over the objects imported before the first run it cost 0.3 s per run here. Call once, before
    the runs.
    """
    gc.collect()
    gc.freeze()


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Lightning's info lines silenced while a run trains; memory released after it (the next run starts clean)."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric", "lightning")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def best_value(cli: Any, monitor: str) -> float | None:
    """The best value of ``monitor`` the run's checkpoint callback saw (else its last logged value)."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    for callback in cli.trainer.callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.monitor == monitor:
            score = callback.best_model_score
            return float(score) if score is not None else None
    value = cli.trainer.callback_metrics.get(monitor)
    return float(value) if value is not None else None
