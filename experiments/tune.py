"""``tune``: Lightning's learning-rate finder (and, if asked, its batch-size finder) through the config's own
optimizer, schedule, data and Trainer, written as a config that ``fit`` runs.

Lightning's ``Tuner`` does the search: a short fit at rising rates, exponentially from ``min_lr`` to ``max_lr``,
stopped once the loss diverges. The suggestion is the rate of the steepest fall of the smoothed loss per decade
of rate (see :func:`steepest_fall` for why not Lightning's ``suggestion()``). What is added: the task builds its
optimizer and schedule from the config (parameter groups, the backbone's lower rate, a one-cycle schedule),
which ``LearningRateFinder`` with CLI optimizers does not see; the suggestion goes where the config keeps its
rate (the one-cycle ``max_lr`` when the config uses one, the optimizer's ``lr`` otherwise) in ``tuned.yaml``;
``lr_find.png`` shows the curve and the point chosen.

During the search every parameter group runs at the same rate (Lightning's finder sets them alike); the
backbone's ``backbone_lr_ratio`` still applies to the suggestion when ``fit`` runs ``tuned.yaml``.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import yaml

from experiments.files import write_atomically

#: the options of ``tune`` itself: left out of ``tuned.yaml``
OWN_OPTIONS = ("config", "ckpt_path", "min_lr", "max_lr", "num_training", "batch_size", "max_batch_size", "study")
#: the one-cycle schedules whose peak rate is the one to tune
ONE_CYCLE = ("OneCycleLR",)


def tuned_config(config: dict[str, Any], lr: float, batch_size: int | None) -> dict[str, Any]:
    """``config`` (a ``fit`` config as a dict) with the suggested rate where the config keeps its rate.

    Returns:
        A new dict: the one-cycle ``max_lr`` (and the optimizer's ``lr``) when the schedule is one-cycle,
        else the optimizer's ``lr``; the data's ``batch_size`` when one was found.
    """
    tuned = {k: copy.deepcopy(v) for k, v in config.items() if k not in OWN_OPTIONS and v is not None}
    model = tuned.setdefault("model", {}).setdefault("init_args", {})
    optimizer = model.setdefault("optimizer", {}).setdefault("init_args", {})
    optimizer["lr"] = lr
    schedule = model.get("lr_scheduler") or {}
    if str(schedule.get("class_path", "")).rsplit(".", 1)[-1] in ONE_CYCLE:
        schedule.setdefault("init_args", {})["max_lr"] = lr
    if batch_size is not None:
        tuned.setdefault("data", {}).setdefault("init_args", {})["batch_size"] = batch_size
    return tuned


def configured_lr(config: dict[str, Any]) -> float | None:
    """The rate the config trains at: the one-cycle ``max_lr`` when it has one, else the optimizer's ``lr``."""
    model = (config.get("model") or {}).get("init_args") or {}
    schedule = model.get("lr_scheduler") or {}
    if str(schedule.get("class_path", "")).rsplit(".", 1)[-1] in ONE_CYCLE:
        value = (schedule.get("init_args") or {}).get("max_lr")
        if value is not None:
            return float(value)
    value = ((model.get("optimizer") or {}).get("init_args") or {}).get("lr")
    return float(value) if value is not None else None


def steepest_fall(lrs: list[float], losses: list[float], skip_begin: int = 10, skip_end: int = 1) -> int | None:
    """The index of the steepest fall of the loss per decade of learning rate (None: too few finite points).

    Lightning's ``suggestion()`` differentiates with respect to the rate itself, which on the finder's exponential
    ladder favours the smallest rates, where the steps are tiny and any wiggle is steep (pytorch-lightning issue
    #21141; the fix, PR #21171, is not released): here the derivative is taken in log10(rate), the axis the rates
    are spaced on. The same skips as Lightning's.
    """
    import torch

    window = range(skip_begin, len(losses) - skip_end)
    kept = [i for i in window if math.isfinite(losses[i])]
    if len(kept) < 3:
        return None
    loss = torch.tensor([losses[i] for i in kept], dtype=torch.float64)
    log_lr = torch.tensor([math.log10(lrs[i]) for i in kept], dtype=torch.float64)
    gradient = torch.gradient(loss, spacing=[log_lr])[0]
    return kept[int(torch.argmin(gradient))]


def batch_trials(start: int, train_size: int, cap: int) -> int:
    """How many doublings of ``start`` the batch-size finder may try: never past the training split or ``cap``."""
    limit = min(train_size, cap)
    return max(0, int(math.floor(math.log2(max(limit, start) / start))))


def run_tune(trainer: Any, model: Any, datamodule: Any, config: dict[str, Any], folder: Path, min_lr: float,
             max_lr: float, num_training: int, batch_size: bool, max_batch_size: int) -> dict[str, Any]:
    """Search, then write ``folder/tuned.yaml`` and ``folder/lr_find.png``; print the suggestion and why.

    Returns:
        ``{"lr", "configured_lr", "batch_size", "tuned", "figure"}``.

    Raises:
        ValueError: the rates are not ``0 < min_lr < max_lr``, or the search found no rate (one line each).
    """
    from lightning.pytorch.tuner import Tuner

    if not 0 < min_lr < max_lr:
        raise ValueError(f"--min_lr {min_lr} and --max_lr {max_lr}: need 0 < min_lr < max_lr")
    if num_training < 10:
        raise ValueError(f"--num_training {num_training}: the finder needs at least 10 rates to smooth its curve")
    tuner = Tuner(trainer)
    found_batch = None
    if batch_size:
        datamodule.setup("fit")
        train_size = len(datamodule.train[0]) if getattr(datamodule, "train", None) is not None else max_batch_size
        start = int(datamodule.batch_size)
        trials = batch_trials(start, train_size, max_batch_size)
        found_batch = start if trials == 0 else int(tuner.scale_batch_size(
            model, datamodule=datamodule, mode="power", init_val=start, max_trials=trials, steps_per_trial=3))
        print(f"batch size: {found_batch} (largest that ran, doubling from {start}, capped at "
              f"{min(train_size, max_batch_size)}: the training split or --max_batch_size)")
    finder = tuner.lr_find(model, datamodule=datamodule, min_lr=min_lr, max_lr=max_lr, num_training=num_training,
                           update_attr=False)
    lrs, losses = (finder.results["lr"], finder.results["loss"]) if finder is not None else ([], [])
    chosen = steepest_fall(lrs, losses)
    if chosen is None:
        raise ValueError(f"the learning-rate finder found no rate between {min_lr:g} and {max_lr:g} (the loss never "
                         "fell steadily): widen --min_lr/--max_lr, or raise --num_training")
    lr = float(lrs[chosen])
    best = min((i for i in range(len(losses)) if math.isfinite(losses[i])), key=losses.__getitem__)
    folder.mkdir(parents=True, exist_ok=True)
    figure = finder.plot(suggest=False)
    figure.axes[0].plot([lr], [losses[chosen]], "o", color="red", markersize=10, label=f"suggested {lr:.3g}")
    figure.axes[0].legend()
    write_atomically(folder / "lr_find.png", lambda f: figure.savefig(f, format="png", dpi=100))
    tuned = tuned_config(config, float(lr), found_batch)
    write_atomically(folder / "tuned.yaml", yaml.safe_dump(tuned, sort_keys=False))
    before = configured_lr(config)
    print(f"suggested learning rate: {lr:.3g} (the steepest fall of the smoothed loss per decade of rate, over "
          f"{len(lrs)} rates from "
          f"{lrs[0]:.3g} to {lrs[-1]:.3g}; the lowest smoothed loss was at {lrs[best]:.3g})")
    print(f"the config trains at {before:.3g}" if before is not None else "the config names no rate")
    print(f"wrote {folder / 'tuned.yaml'} (fit -c it) and {folder / 'lr_find.png'}")
    return {"lr": float(lr), "configured_lr": before, "batch_size": found_batch, "tuned": str(folder / "tuned.yaml"),
            "figure": str(folder / "lr_find.png")}
