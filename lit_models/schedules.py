"""Learning-rate schedules whose length the Trainer fills in, so a config need not repeat max_epochs.

A task receives its scheduler as a callable built by jsonargparse (a ``functools.partial`` of the
class with the config's arguments); the helpers here read that callable and complete it.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import torch
from torch.optim import Optimizer


class CosineAnnealingLR(torch.optim.lr_scheduler.CosineAnnealingLR):
    """torch's cosine annealing with ``T_max`` optional: the task sets it to the run's length
    (epochs, or steps with ``scheduler_interval: step``) when the config leaves it out.
    """

    def __init__(self, optimizer: Optimizer, T_max: int | None = None, eta_min: float = 0.0,  # noqa: N803
                 last_epoch: int = -1) -> None:
        if T_max is None:
            raise ValueError("CosineAnnealingLR needs T_max; inside a task it is filled in from the Trainer")
        super().__init__(optimizer, T_max=T_max, eta_min=eta_min, last_epoch=last_epoch)


def bound_class(factory: Any) -> type | None:
    """The class behind a callable built by jsonargparse (a ``functools.partial``)."""
    if isinstance(factory, type):
        return factory
    if isinstance(factory, functools.partial):
        for arg in factory.args:
            if isinstance(arg, type):
                return arg
        return bound_class(factory.func)
    return None


def bound_kwargs(factory: Any) -> dict[str, Any]:
    """The keyword arguments a ``functools.partial`` (as LightningCLI builds optimizers) binds."""
    return dict(factory.keywords) if isinstance(factory, functools.partial) else {}


def missing_lengths(factory: Any, steps: int, epochs: int, interval: str) -> dict[str, int]:
    """The schedule lengths the config left out, from the run's ``steps`` and ``epochs``."""
    cls = bound_class(factory)
    if cls is None:
        return {}
    given = {k: v for k, v in bound_kwargs(factory).items() if v is not None}
    params = inspect.signature(cls).parameters
    length = steps if interval == "step" else max(1, epochs)
    fill: dict[str, int] = {}
    if "total_steps" in params and "total_steps" not in given and "epochs" not in given:
        if interval != "step":
            raise ValueError(f"{cls.__name__} counts steps: set --model.scheduler_interval step")
        fill["total_steps"] = steps
    if "T_max" in params and "T_max" not in given:
        fill["T_max"] = length
    if "total_iters" in params and "total_iters" not in given and cls.__name__ == "PolynomialLR":
        fill["total_iters"] = length
    return fill


def one_cycle_total_steps(kwargs: dict[str, Any]) -> int | None:
    """The steps a one-cycle schedule spans, from ``total_steps`` or epochs x steps per epoch (None: not given)."""
    if kwargs.get("total_steps") is not None:
        return int(kwargs["total_steps"])
    if kwargs.get("epochs") is None or kwargs.get("steps_per_epoch") is None:
        return None  # torch's own message names what is missing
    return int(kwargs["epochs"]) * int(kwargs["steps_per_epoch"])


def one_cycle_phase_lengths(total_steps: int, pct_start: float, three_phase: bool) -> list[float]:
    """Steps in each phase of torch's ``OneCycleLR`` (its phase end steps, differenced)."""
    warm_end = pct_start * total_steps - 1
    ends = [warm_end, 2 * warm_end, total_steps - 1] if three_phase else [warm_end, total_steps - 1]
    return [end - start for start, end in zip([0.0, *ends[:-1]], ends, strict=True)]


def one_cycle_pct_start_for_short_run(total_steps: int, pct_start: float, three_phase: bool) -> float | None:
    """A ``pct_start`` as close as possible to the given one that leaves no phase empty.

    torch's ``OneCycleLR`` divides by each phase's length, so a phase of zero steps (pct_start 0.25
    over 4 steps) fails in its constructor. Returns ``None`` when the given value is fine, and also
    when no value works (one step or fewer: nothing to schedule).
    """
    if total_steps <= 1 or all(n != 0 for n in one_cycle_phase_lengths(total_steps, pct_start, three_phase)):
        return None
    # warm-up ends on whole or half steps; prefer phases of at least one step, then the nearest value
    candidates = [(k / 2 + 1) / total_steps for k in range(1, 2 * total_steps)]
    valid = [p for p in candidates if 0 < p < 1 and all(
        n > 0 for n in one_cycle_phase_lengths(total_steps, p, three_phase))]
    if not valid:
        return None
    return min(valid, key=lambda p: (min(one_cycle_phase_lengths(total_steps, p, three_phase)) < 1,
                                     abs(p - pct_start)))
