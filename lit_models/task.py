"""What every task shares: the wrapped net, the optimizer and schedule, the training loss, the figure schedule.

A task holds only what a LightningModule is for: the net, the loss, the metrics, the optimizers and
its figures. Run concerns (random states, the experiment tag, stopping on a non-finite loss) are
Lightning callbacks that the CLI adds (``experiments/callbacks/``).
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from typing_extensions import override

from lit_models import schedules
from lit_models.figure_sinks import FigureSinks
from lit_models.inference import CHECKPOINT_KEY, Inference


class Task(L.LightningModule):
    """Base of the tasks. Subclasses add their own arguments and forward the rest with ``**kwargs``
    (LightningCLI follows them here, so ``--help`` and the YAML show every argument).

    Optimizer and scheduler are injected as callables (LightningCLI's ``OptimizerCallable`` /
    ``LRSchedulerCallable``) so that the task can build parameter groups itself (no weight decay on
    norms and biases, a lower rate for a pretrained backbone) and so that schedules measured in
    steps (``OneCycleLR``'s ``total_steps``, ``CosineAnnealingLR``'s ``T_max``) are filled in from
    the Trainer when the config leaves them out.

    Figures cost tens to hundreds of milliseconds to draw, so validation draws them every
    ``figure_every_n_epochs`` epochs and at the last one (0 turns them off); test always.

    Args:
        net: the plain nn.Module that maps a batch to outputs (logits for classifiers).
        optimizer: the optimizer class and its arguments (parameter groups are built by the task).
        lr_scheduler: a learning-rate schedule; its length in steps or epochs is filled in from the Trainer.
        scheduler_interval: step the schedule every epoch or every training step.
        no_weight_decay_on_norm_and_bias: exempt normalisation weights and biases from weight decay.
        backbone_lr_ratio: the pretrained backbone's learning rate as a fraction of the optimizer's.
        compile_net: compile the net with torch.compile (nn.Module.compile; checkpoints keep plain keys).
        figure_every_n_epochs: draw validation figures every N epochs and at the last (0: never).
    """

    #: metric watched by the default ModelCheckpoint and by ReduceLROnPlateau
    monitor: str = "val/loss"
    monitor_mode: Literal["min", "max"] = "min"

    @classmethod
    def monitor_of(cls, init_args: dict[str, Any]) -> tuple[str, str]:
        """(monitored metric, min|max) a task of this class configured with ``init_args`` follows, known before
        it is built (sweeps decide the study's direction from it).
        """
        return cls.monitor, cls.monitor_mode

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        scheduler_interval: Literal["epoch", "step"] = "epoch",
        no_weight_decay_on_norm_and_bias: bool = False,
        backbone_lr_ratio: float | None = None,
        compile_net: bool = False,
        figure_every_n_epochs: int = 5,
    ) -> None:
        super().__init__()
        if backbone_lr_ratio is not None and backbone_lr_ratio <= 0:
            raise ValueError(f"--model.backbone_lr_ratio must be > 0, got {backbone_lr_ratio}")
        if figure_every_n_epochs < 0:
            raise ValueError("--model.figure_every_n_epochs must be >= 0 (0 turns the figures off)")
        self.net = net
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.scheduler_interval = scheduler_interval
        self.no_weight_decay_on_norm_and_bias = no_weight_decay_on_norm_and_bias
        self.backbone_lr_ratio = backbone_lr_ratio
        self.compile_net = compile_net
        self._net_compiled = False
        self.figure_every_n_epochs = figure_every_n_epochs
        self._save_plain_hyperparameters()
        self._metrics_built = False
        #: global step of the checkpoint a test/validate/predict run evaluates (figures are drawn there)
        self.evaluated_step: int | None = None
        # training losses not yet summed (detached device tensors), and the running sums and counts
        # since the last logged step and over the epoch; see log_train_loss
        self._pending_losses: list[torch.Tensor] = []
        self._loss_window: tuple[torch.Tensor | float, int] = (0.0, 0)
        self._loss_epoch: tuple[torch.Tensor | float, int] = (0.0, 0)

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning sets ``_current_fx_name`` around every hook call, ~40 times per training step, and
        # ``nn.Module.__setattr__``'s type checks are costly. Measured on the default sin_mlp
        # experiment, 2-core CPU, five alternated runs each: 0.910 ms/step with this, 1.023 without
        # (this bypass buys 12%; BENCHMARKS.md, "Lightning's private attributes").
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def _save_plain_hyperparameters(self) -> None:
        """Save the constructor arguments; under the CLI these are the config (net included).

        Called from this base ``__init__``: Lightning collects the arguments of every ``__init__`` up
        the class chain. Outside the CLI the net is a module object (its weights are in the state dict
        already) and the optimizer a class or partial; neither belongs in a checkpoint's
        hyperparameters, which must load with ``torch.load(weights_only=True)``, so they are left out.
        """
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is an instance of `nn.Module`.*")
            self.save_hyperparameters(logger=False)
        for key, value in list(self.hparams.items()):
            if not isinstance(value, (dict, list, tuple, str, int, float, bool, type(None))):
                self.hparams.pop(key)

    @override
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    # -- metrics --------------------------------------------------------------------------------

    @override
    def setup(self, stage: str) -> None:
        if not self._metrics_built:
            self.build_metrics()
            self._metrics_built = True
        if self.compile_net and not self._net_compiled:
            # nn.Module.compile compiles the net's forward in place: parameters, state dict keys and
            # checkpoints stay those of the plain net, so a run trained with compile resumes, tests
            # and loads without it
            self.net.compile()
            self._net_compiled = True

    def build_metrics(self) -> None:
        """Create every torchmetrics object of the task (one place; called once, in ``setup``)."""

    # -- after training -------------------------------------------------------------------------

    def inference(self, datamodule: Any) -> Inference:
        """The task as a shipped model: raw input -> answer, and what both are (the inference contract
        that ``predict``'s writer, ``export`` and ``serve`` read; see :mod:`lit_models.inference`).

        ``predict_step`` must return the answer under ``Inference.output_name`` (with ``target`` and
        ``index`` when the batch carries them), computed as ``module`` computes it from raw input.
        """
        raise NotImplementedError(f"{type(self).__name__} does not define inference(); predict, export and serve "
                                  "need it (see lit_models/inference.py)")

    # -- training loss --------------------------------------------------------------------------

    def log_train_loss(self, loss: torch.Tensor, batch_idx: int) -> None:
        """Log ``train/loss`` (mean since the last logged step) and ``train/loss_epoch``.

        Measured on Lightning 2.6: each ``self.log`` call costs 0.6-0.8 ms on the CPU (it re-applies
        ``.to(device)`` to its stored metadata), as much as a whole step of the sin(1/x) MLP. So
        ``self.log`` is called only on the steps the logger writes (``log_every_n_steps``) and once
        per epoch. In between, each step only keeps its detached loss (a list append: no tensor op,
        no host-device sync); the kept losses are summed on the device when they are logged.
        """
        self._pending_losses.append(loss.detach())
        if (self.global_step + 1) % max(1, self.trainer.log_every_n_steps) != 0:
            return
        self._fold_pending_losses()
        total, count = self._loss_window
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

    @override
    def on_train_epoch_end(self) -> None:
        self._fold_pending_losses()
        total, count = self._loss_epoch
        if count:
            self.log("train/loss_epoch", total / count, on_step=False, on_epoch=True, sync_dist=True)
        self._loss_epoch = self._loss_window = (0.0, 0)

    # -- optimizer and schedule -----------------------------------------------------------------

    @property
    def backbone(self) -> nn.Module:
        """The net's pretrained part, for Lightning's ``BackboneFinetuning`` (nets that have one)."""
        return self.net.backbone

    def parameter_groups(self) -> list[dict[str, Any]]:
        """Trainable parameters in groups: optionally no weight decay on norms and biases, and the
        backbone at ``backbone_lr_ratio`` times the optimizer's rate (for nets with ``backbone``).
        """
        trainable = {id(p) for p in self.net.parameters() if p.requires_grad}
        backbone_ids: set[int] = set()
        # a net that says it has no pretrained weights (TorchvisionClassifier with weights none, whose
        # ``expects`` is None) trains every layer at the full rate: a random backbone gains nothing from a lower one
        pretrained = getattr(self.net, "expects", True) is not None
        if self.backbone_lr_ratio is not None and pretrained:
            if not hasattr(self.net, "backbone"):
                raise ValueError(f"--model.backbone_lr_ratio needs a net with a backbone; {type(self.net).__name__} "
                                 "has none")
            backbone_ids = {id(p) for p in self.net.backbone.parameters()}
        base_lr = schedules.bound_kwargs(self.optimizer).get("lr")
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

    @override
    def configure_optimizers(self) -> Any:
        try:
            optimizer = self.optimizer(self.parameter_groups())
        except ValueError as err:  # torch's own checks (negative lr, bad betas) name no option
            raise ValueError(f"--model.optimizer: {err}") from None
        if self.lr_scheduler is None:
            return optimizer
        kwargs = schedules.missing_lengths(self.lr_scheduler, int(self.trainer.estimated_stepping_batches),
                                           int(self.trainer.max_epochs or 1), self.scheduler_interval)
        cls = schedules.bound_class(self.lr_scheduler)
        if cls is not None and issubclass(cls, torch.optim.lr_scheduler.OneCycleLR):
            kwargs.update(self._one_cycle_fit({**schedules.bound_kwargs(self.lr_scheduler), **kwargs}))
        scheduler = self.lr_scheduler(optimizer, **kwargs)
        config: dict[str, Any] = {"scheduler": scheduler, "interval": self.scheduler_interval}
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            config["monitor"] = self.monitor
        return {"optimizer": optimizer, "lr_scheduler": config}

    def _one_cycle_fit(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """``pct_start`` for a one-cycle schedule too short for its phases (torch would divide by zero).

        A smoke run (``limit_train_batches``, ``fast_dev_run``, ``overfit_batches``, ``max_steps``) is
        let through with the phases shortened and a warning; a full run that is this short is a
        mistake, and is refused with the options that collide.
        """
        total = schedules.one_cycle_total_steps(kwargs)
        pct_start, three_phase = float(kwargs.get("pct_start", 0.3)), bool(kwargs.get("three_phase", False))
        if total is None or all(n != 0 for n in schedules.one_cycle_phase_lengths(total, pct_start, three_phase)):
            return {}
        trainer = self.trainer
        smoke = (trainer.fast_dev_run or trainer.overfit_batches > 0 or trainer.max_steps != -1
                 or trainer.limit_train_batches != 1.0)
        fitted = schedules.one_cycle_pct_start_for_short_run(total, pct_start, three_phase)
        if not smoke or fitted is None:
            raise ValueError(
                f"--model.lr_scheduler: OneCycleLR with pct_start {pct_start} over {total} steps has a phase "
                "of zero steps (torch would divide by zero); train for more steps (--trainer.max_epochs, "
                "--data.batch_size) or change pct_start"
            )
        rank_zero_warn(f"OneCycleLR: this short run has {total} steps, too few for pct_start {pct_start}; "
                       f"using pct_start {fitted:.3g} so that every phase has a step")
        return {"pct_start": fitted}

    @override
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

    @override
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.evaluated_step = checkpoint.get("global_step")

    @override
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Every checkpoint carries its inference description (class names, input size, preparation; see
        :meth:`lit_models.inference.Inference.record`), so ``predict``, ``export`` and ``serve`` run from the
        checkpoint alone on a machine without the training data.
        """
        datamodule = self._trainer.datamodule if self._trainer is not None else None
        if datamodule is None:
            return
        try:
            checkpoint[CHECKPOINT_KEY] = self.inference(datamodule).record()
        except (NotImplementedError, AttributeError):  # no inference contract, or data that cannot describe
            pass  # itself (a data module without preprocessor()): the checkpoint needs its config, as before

    # -- figures --------------------------------------------------------------------------------

    def figures_due(self) -> bool:
        """Whether this epoch's evaluation draws figures (on every rank alike: they may sync)."""
        trainer = self._trainer
        if self.figure_every_n_epochs == 0 or trainer is None or trainer.sanity_checking:
            return False
        if trainer.state.fn != "fit":  # a test or validate run: always
            return True
        last_epoch = self.current_epoch + 1 >= (trainer.max_epochs or 0) > 0
        return last_epoch or self.current_epoch % self.figure_every_n_epochs == 0

    def figure_writer(self) -> tuple[FigureSinks, int] | None:
        """(the trackers' figure sinks, step) when a figure should be drawn now: rank zero, real epochs only.

        The step is the training step reached: during fit the current one, in a test or validate run
        the step of the checkpoint it evaluates, so figures line up with the run's curves.
        """
        trainer = self._trainer
        if trainer is None or not trainer.is_global_zero or not self.figures_due():
            return None
        step = self.global_step if trainer.state.fn == "fit" else (self.evaluated_step or self.global_step)
        sinks = FigureSinks(trainer.loggers)
        return (sinks, step) if sinks else None
        return None
