"""What every task shares: the wrapped net, the optimizer and LR scheduler injected from the config."""

from __future__ import annotations

import functools
import inspect
import random
import warnings
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn


def _bound_class(factory: Any) -> type | None:
    """The scheduler class behind a callable built by jsonargparse (a ``functools.partial``)."""
    if isinstance(factory, type):
        return factory
    if isinstance(factory, functools.partial):
        for arg in factory.args:
            if isinstance(arg, type):
                return arg
        return _bound_class(factory.func)
    return None


def _bound_kwargs(factory: Any) -> dict[str, Any]:
    return dict(factory.keywords) if isinstance(factory, functools.partial) else {}


def _numpy_state_to_plain(state: tuple) -> tuple:
    name, keys, pos, has_gauss, cached = state
    return name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)


def _numpy_state_from_plain(state: tuple) -> tuple:
    name, keys, pos, has_gauss, cached = state
    return name, keys.numpy().astype(np.uint32), pos, has_gauss, cached


def _python_state_to_plain(state: tuple) -> tuple:
    # the 625 words as one tensor: pickled one by one they cost ~1 ms per checkpoint
    version, words, gauss = state
    return version, torch.tensor(words, dtype=torch.int64), gauss


def _python_state_from_plain(state: tuple) -> tuple:
    version, words, gauss = state
    return version, tuple(words.tolist()) if isinstance(words, torch.Tensor) else words, gauss


#: checkpoint key naming the experiment that wrote it (``Task.experiment``)
EXPERIMENT_KEY = "litexp_experiment"


class NonFiniteLossError(ValueError):
    """The training loss became NaN or infinite."""


class Task(L.LightningModule):
    """Base of the tasks: holds ``net`` and builds the optimizer/scheduler the config names.

    Optimizer and scheduler are injected as callables (LightningCLI's ``OptimizerCallable`` /
    ``LRSchedulerCallable``) so that a task can build parameter groups itself (no weight decay on
    norms and biases, a lower rate for a pretrained backbone) and so that schedules measured in
    steps (``OneCycleLR``'s ``total_steps``, ``CosineAnnealingLR``'s ``T_max``) are filled in from
    the Trainer when the config leaves them out.
    """

    #: the experiment this task runs in, set by the CLI and written into every checkpoint, so that a
    #: checkpoint of another experiment passed to ``--ckpt_path`` is recognised instead of silently
    #: changing the model (a callback would do the same, at the price of a call at every hook)
    experiment: str | None = None

    #: metric watched by the default ModelCheckpoint and by ReduceLROnPlateau
    monitor: str = "val/loss"
    monitor_mode: Literal["min", "max"] = "min"

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        scheduler_interval: Literal["epoch", "step"] = "epoch",
        no_weight_decay_on_norm_and_bias: bool = False,
        compile: bool = False,
        backbone_lr_ratio: float | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.scheduler_interval = scheduler_interval
        self.no_weight_decay_on_norm_and_bias = no_weight_decay_on_norm_and_bias
        self.compile = compile
        if backbone_lr_ratio is not None and backbone_lr_ratio <= 0:
            raise ValueError(f"--model.backbone_lr_ratio must be > 0, got {backbone_lr_ratio}")
        self.backbone_lr_ratio = backbone_lr_ratio
        # training losses not yet summed (detached device tensors), and the running sums and counts
        # since the last logged step and over the epoch; see log_train_loss
        self._pending_losses: list[torch.Tensor] = []
        self._loss_window: tuple[torch.Tensor | float, int] = (0.0, 0)
        self._loss_epoch: tuple[torch.Tensor | float, int] = (0.0, 0)

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning sets ``_current_fx_name`` around every hook call, ~40 times per training step;
        # ``nn.Module.__setattr__``'s type checks made that 0.2 ms of a 0.8 ms sin(1/x) step
        # (measured with cProfile). A plain attribute needs none of them.
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def save_task_hyperparameters(self) -> None:
        """Save the constructor arguments; under the CLI these are the config (net included).

        Outside the CLI the net is a module object (its weights are in the state dict already) and
        the optimizer a class or partial; neither belongs in a checkpoint's hyperparameters, which
        must load with ``torch.load(weights_only=True)``, so they are left out.
        """
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is an instance of `nn.Module`.*")
            self.save_hyperparameters(logger=False)
        for key, value in list(self.hparams.items()):
            if not isinstance(value, (dict, list, tuple, str, int, float, bool, type(None))):
                self.hparams.pop(key)
                self._hparams_initial.pop(key, None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run_net(x)

    def run_net(self, x: torch.Tensor) -> torch.Tensor:
        """The net, compiled when ``compile`` is on."""
        compiled = self.__dict__.get("_compiled_net")
        return compiled(x) if compiled is not None else self.net(x)

    def configure_model(self) -> None:
        # The compiled wrapper is kept outside the module tree (a plain attribute), so parameters,
        # state dict keys and checkpoints stay those of the plain net: a run trained with compile
        # resumes, tests and loads without it.
        if self.compile and self.__dict__.get("_compiled_net") is None:
            self.__dict__["_compiled_net"] = torch.compile(self.net)

    @property
    def backbone(self) -> nn.Module:
        """The net's pretrained part, for Lightning's ``BackboneFinetuning`` (nets that have one)."""
        return self.net.backbone

    def parameter_groups(self) -> list[dict[str, Any]]:
        """Trainable parameters in groups: optionally no weight decay on norms and biases, and the
        backbone at ``backbone_lr_ratio`` times the optimizer's rate (for nets with ``backbone``)."""
        trainable = {id(p) for p in self.net.parameters() if p.requires_grad}
        backbone_ids: set[int] = set()
        if self.backbone_lr_ratio is not None:
            if not hasattr(self.net, "backbone"):
                raise ValueError(f"--model.backbone_lr_ratio needs a net with a backbone; {type(self.net).__name__} "
                                 "has none")
            backbone_ids = {id(p) for p in self.net.backbone.parameters()}
        base_lr = _bound_kwargs(self.optimizer).get("lr")
        groups: list[dict[str, Any]] = []
        for is_backbone in (False, True):
            params = [p for p in self.net.parameters() if id(p) in trainable and (id(p) in backbone_ids) == is_backbone]
            if not params:
                continue
            extra: dict[str, Any] = {}
            if is_backbone:
                if base_lr is None:
                    raise ValueError("--model.backbone_lr_ratio needs the optimizer's lr in the config")
                extra["lr"] = base_lr * self.backbone_lr_ratio
            if self.no_weight_decay_on_norm_and_bias:
                groups.append({"params": [p for p in params if p.ndim > 1], **extra})
                groups.append({"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0, **extra})
            else:
                groups.append({"params": params, **extra})
        return [g for g in groups if g["params"]]

    def configure_optimizers(self) -> Any:
        try:
            optimizer = self.optimizer(self.parameter_groups())
        except ValueError as err:  # torch's own checks (negative lr, bad betas) name no option
            raise ValueError(f"--model.optimizer: {err}") from None
        if self.lr_scheduler is None:
            return optimizer
        lengths = self._schedule_lengths()
        cls = _bound_class(self.lr_scheduler)
        if cls is not None and issubclass(cls, torch.optim.lr_scheduler.OneCycleLR):
            self._check_one_cycle_phases({**_bound_kwargs(self.lr_scheduler), **lengths})
        scheduler = self.lr_scheduler(optimizer, **lengths)
        config: dict[str, Any] = {"scheduler": scheduler, "interval": self.scheduler_interval}
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            config["monitor"] = self.monitor
        return {"optimizer": optimizer, "lr_scheduler": config}

    def on_train_start(self) -> None:
        # A resumed one-cycle schedule keeps the length it was planned with; a longer run would
        # fail mid-way with torch's "Tried to step N times". Say it before the first step.
        for config in self.trainer.lr_scheduler_configs:
            planned = getattr(config.scheduler, "total_steps", None)
            needed = int(self.trainer.estimated_stepping_batches)
            if isinstance(planned, int) and planned < needed:
                raise ValueError(
                    f"the {type(config.scheduler).__name__} schedule was planned for {planned} steps but this run "
                    f"takes {needed}; resume with the original --trainer.max_epochs, or use a constant or "
                    "epoch-based schedule to extend a run"
                )

    def _check_one_cycle_phases(self, kwargs: dict[str, Any]) -> None:
        # torch's OneCycleLR divides by the length of each phase; a phase of zero steps (e.g.
        # pct_start 0.25 over 4 steps, a short debug run) fails in its constructor with a bare
        # ZeroDivisionError. Say which settings collide instead.
        total_steps = kwargs.get("total_steps")
        if total_steps is None:
            if kwargs.get("epochs") is None or kwargs.get("steps_per_epoch") is None:
                return  # torch's own message names what is missing
            total_steps = kwargs["epochs"] * kwargs["steps_per_epoch"]
        pct_start = float(kwargs.get("pct_start", 0.3))
        ends = [pct_start * total_steps - 1, total_steps - 1]
        if kwargs.get("three_phase"):
            ends = [pct_start * total_steps - 1, 2 * pct_start * total_steps - 2, total_steps - 1]
        starts = [0.0, *ends[:-1]]
        if total_steps > 1 and any(end == start for start, end in zip(starts, ends, strict=True)):
            raise ValueError(
                f"--model.lr_scheduler: OneCycleLR with pct_start {pct_start} over {total_steps} steps has a phase "
                "of zero steps (torch would divide by zero); train for more steps (--trainer.max_epochs, "
                "--trainer.limit_train_batches) or change pct_start"
            )

    def _schedule_lengths(self) -> dict[str, int]:
        """Fill in schedule lengths the config left out, from the Trainer's run length."""
        cls = _bound_class(self.lr_scheduler)
        if cls is None:
            return {}
        given = {k: v for k, v in _bound_kwargs(self.lr_scheduler).items() if v is not None}
        params = inspect.signature(cls).parameters
        steps = int(self.trainer.estimated_stepping_batches)
        length = steps if self.scheduler_interval == "step" else max(1, int(self.trainer.max_epochs or 1))
        fill: dict[str, int] = {}
        if "total_steps" in params and "total_steps" not in given and "epochs" not in given:
            if self.scheduler_interval != "step":
                raise ValueError(
                    f"{cls.__name__} counts steps: set --model.scheduler_interval step"
                )
            fill["total_steps"] = steps
        if "T_max" in params and "T_max" not in given:
            fill["T_max"] = length
        if "total_iters" in params and "total_iters" not in given and cls.__name__ == "PolynomialLR":
            fill["total_iters"] = length
        return fill

    # -- training loss logging ----------------------------------------------------------------

    def log_train_loss(self, loss: torch.Tensor, batch_idx: int) -> None:
        """Log ``train/loss`` (mean since the last logged step) and ``train/loss_epoch``.

        Measured on Lightning 2.6: each ``self.log`` call costs 0.6-0.8 ms on the CPU (it re-applies
        ``.to(device)`` to its stored metadata), as much as a whole step of the sin(1/x) MLP. So
        ``self.log`` is called only on the steps the logger writes (``log_every_n_steps``) and once
        per epoch. In between, each step only keeps its detached loss (a list append: no tensor op,
        no host-device sync); the kept losses are summed on the device when they are logged.
        """
        self._pending_losses.append(loss.detach())
        every = max(1, self.trainer.log_every_n_steps)
        log_now = (self.global_step + 1) % every == 0
        if not log_now and batch_idx + 1 < self.trainer.num_training_batches:
            return
        self._fold_pending_losses()
        total, count = self._loss_window
        # One host-device sync per logged step and per epoch, never per step: enough to stop a
        # diverged run before its next checkpoint (saved after validation) is written.
        if count and not torch.isfinite(total).item():
            raise NonFiniteLossError(
                f"train/loss became {float(total)} by step {self.global_step} "
                f"(epoch {self.current_epoch}); the run stopped and its last checkpoint holds the last good "
                "weights: lower the learning rate or add gradient clipping (--trainer.gradient_clip_val 1.0)"
            )
        if log_now:
            self.log("train/loss", total / count, on_step=True, on_epoch=False, prog_bar=True)
            self._loss_window = (0.0, 0)

    def _fold_pending_losses(self) -> None:
        if not self._pending_losses:
            return
        total = torch.stack(self._pending_losses).float().sum()
        count = len(self._pending_losses)
        self._pending_losses.clear()
        window, epoch = self._loss_window, self._loss_epoch
        self._loss_window = (window[0] + total, window[1] + count)
        self._loss_epoch = (epoch[0] + total, epoch[1] + count)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.experiment is not None:
            checkpoint[EXPERIMENT_KEY] = self.experiment
        # Lightning does not save the random number generators; without them a resumed run draws
        # other dropout masks than an uninterrupted one. (The data order is a function of the epoch.)
        checkpoint["rng_states"] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            # as tensors and plain numbers, so the file loads with torch.load(weights_only=True)
            "numpy": _numpy_state_to_plain(np.random.get_state()),
            "python": _python_state_to_plain(random.getstate()),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get("rng_states")
        if not states or self._trainer is None or not self.trainer.training:
            return  # only a resumed fit continues the random streams
        torch.set_rng_state(states["torch"])
        if states["cuda"] and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states["cuda"])
        np.random.set_state(_numpy_state_from_plain(states["numpy"]))
        random.setstate(_python_state_from_plain(states["python"]))

    def on_train_epoch_end(self) -> None:
        self._fold_pending_losses()  # an epoch cut short by max_steps leaves some
        total, count = self._loss_epoch
        if count:
            self.log("train/loss_epoch", total / count, on_step=False, on_epoch=True, sync_dist=True)
        self._loss_epoch = self._loss_window = (0.0, 0)

    # -- helpers for figure logging -------------------------------------------------------------

    def figure_writer(self) -> Any | None:
        """The TensorBoard writer when a figure should be drawn now: rank zero, real epochs only."""
        trainer = self._trainer
        if trainer is None or not trainer.is_global_zero or trainer.sanity_checking:
            return None
        for logger in trainer.loggers:
            if isinstance(logger, L.pytorch.loggers.TensorBoardLogger):
                return logger.experiment
        return None
