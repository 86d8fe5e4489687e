"""The command line: ``python -m experiments fit|validate|test|predict -c experiments/NAME.yaml``.

A thin LightningCLI subclass. It adds what an experiment framework needs on top of Lightning:
runs grouped by experiment (``lightning_logs/<experiment>/version_N``), default logger and
callbacks, ``--ckpt_path best|last`` that work across processes, mixed precision by default on a
GPU, and one-line errors for mistakes a user can make.
"""

from __future__ import annotations

import os
import re
import sys
from argparse import ArgumentError
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch import LightningDataModule
from lightning.pytorch.callbacks import (
    LearningRateMonitor,
    ModelCheckpoint,
    ProgressBar,
    TQDMProgressBar,
)
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from experiments import checkpoint_config, flat_config, lean_loop, quiet, requeue, runs
from experiments.callbacks import (
    ExperimentTag,
    NonFiniteLossError,
    NonFiniteLossStop,
    PredictionWriter,
    RandomStates,
    RunSummary,
)
from experiments.checkpoint_io import AtomicCheckpointIO
from experiments.trainer import ExperimentTrainer
from lit_models.task import Task

#: how rank zero tells the DDP workers it launches which run folder it claimed
RUN_VERSION_ENV = "LITEXP_RUN_VERSION"

lean_loop.drop_nvml_probe_without_driver()  # `import lightning` above set it

#: subcommands that only make sense with a trained model
NEEDS_CHECKPOINT = ("predict", "export", "serve")

#: how often the progress bar redraws; redrawing every step costs more than a small model's step
PROGRESS_REFRESH_STEPS = 20


def default_checkpoints(monitor: str, mode: str) -> list[ModelCheckpoint]:
    """The best checkpoint by ``monitor`` and ``last.ckpt`` rewritten after every epoch.

    Two callbacks, because ``ModelCheckpoint(save_last=True)`` in Lightning 2.6 refreshes
    ``last.ckpt`` only when a new best was saved, which would make resuming lose epochs. The last
    one saves at the end of every training epoch (after that epoch's validation, if any): left to
    Lightning's default it would save only when validation runs (every second epoch with
    ``check_val_every_n_epoch: 2``).
    """
    best = ModelCheckpoint(
        monitor=monitor,
        mode=mode,
        save_top_k=1,
        filename=runs.BEST_PREFIX + "epoch{epoch:03d}",
        auto_insert_metric_name=False,
    )
    last = ModelCheckpoint(
        monitor=None,
        save_top_k=1,
        filename=runs.LAST_NAME.removesuffix(".ckpt"),
        enable_version_counter=False,
        save_on_train_epoch_end=True,
    )
    return [best, last]


def run_concerns(experiment: str, config: dict[str, Any] | None = None,
                 tags: dict[str, Any] | None = None) -> list[Any]:
    """The callbacks every run gets: random states per rank, the experiment tag, the non-finite stop, and
    the run's summary.json and HPARAMS entry (``config``: the run's flattened config; ``tags``: extra
    fields such as a sweep's study and trial)."""
    return [RandomStates(), ExperimentTag(experiment), NonFiniteLossStop(), RunSummary(experiment, config, tags)]


def _name_experiment(config: Any) -> None:
    """Default the experiment's name to the stem of the first config file."""
    if not config.get("experiment"):
        files = config.get("config") or []
        config.experiment = Path(str(files[0])).stem if files else "default"


class ExperimentCLI(LightningCLI):
    """LightningCLI with experiment-aware logging, checkpointing and ``best``/``last`` lookup."""

    def __init__(self, args: Any = None, run: bool = True, extra_callbacks: list[Any] | None = None,
                 run_tags: dict[str, Any] | None = None, report: bool = True, **kwargs: Any) -> None:
        """``extra_callbacks``, ``run_tags`` (added to summary.json and the hyperparameters) and ``report``
        (the lines printed after a fit) are for callers that run experiments in-process (sweeps)."""
        quiet.silence_known_noise()
        self._extra_callbacks = list(extra_callbacks or [])
        self._run_tags = dict(run_tags or {})
        self._report = report
        self._run_version: int | None = None
        self._explicit_net: set[str] = set()
        self._checkpoint: dict[str, Any] | None = None  # --ckpt_path's, memory-mapped, read once
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        # Parse errors raise (instead of printing the whole usage) so main() can say them in a line.
        kwargs.setdefault("parser_kwargs", {"exit_on_error": False})
        super().__init__(
            model_class=Task,
            datamodule_class=LightningDataModule,
            trainer_class=ExperimentTrainer,
            subclass_mode_model=True,
            subclass_mode_data=True,
            auto_configure_optimizers=False,
            args=args,
            run=run,
            **kwargs,
        )

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """Lightning's four, and ``export`` and ``serve`` (methods of :class:`ExperimentTrainer`)."""
        return {**LightningCLI.subcommands(), "export": {"model", "datamodule"}, "serve": {"model", "datamodule"}}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--experiment",
            type=str | None,
            default=None,
            help="Name of the experiment: runs go to <default_root_dir>/lightning_logs/<experiment>/"
            "version_N. Default: the stem of the first config file.",
        )

    # -- parsing ------------------------------------------------------------------------------

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        tokens = sys.argv[1:] if args is None else args if isinstance(args, (list, tuple)) else []
        self._explicit_net = checkpoint_config.explicit_net_options([str(t) for t in tokens])
        config = self.config[subcommand]
        _name_experiment(config)
        ckpt_path = config.get("ckpt_path")
        if subcommand in NEEDS_CHECKPOINT and not ckpt_path:
            raise ValueError(f"{subcommand} needs trained weights: pass --ckpt_path best, last or the path of a .ckpt")
        if ckpt_path in ("best", "last"):
            # Resolve before LightningCLI reads the checkpoint's hyperparameters.
            self._run_version, path = runs.resolve_checkpoint(self._experiment_dir(config), ckpt_path)
            config.ckpt_path = str(path)
        elif ckpt_path and not Path(ckpt_path).is_file():
            raise FileNotFoundError(
                f"--ckpt_path {ckpt_path}: no such file; pass best, last, or the path of a .ckpt file"
            )
        elif ckpt_path:  # a checkpoint inside one of this experiment's runs: evaluate into that run
            self._run_version = runs.version_holding(self._experiment_dir(config), Path(ckpt_path))
        if config.get("ckpt_path"):
            net_class = config.get("model.init_args.net.class_path")
            self._checkpoint = runs.check_checkpoint_experiment(Path(config.ckpt_path), config.experiment, net_class)

    def _parse_ckpt_path(self) -> None:
        """Replaces LightningCLI's: of a checkpoint's hyperparameters only the net's are applied.

        LightningCLI calls this right after parsing and would apply every saved hyperparameter over
        what the user typed; see ``experiments/checkpoint_config.py`` for the rule used instead.
        """
        saved = checkpoint_config.saved_net(self._checkpoint) if self._checkpoint is not None else None
        if saved is None:
            return
        subcommand = self.config.subcommand
        config = self.config[subcommand]
        configured = config.get(checkpoint_config.NET)
        configured = configured.as_dict() if hasattr(configured, "as_dict") else dict(configured or {})
        net = checkpoint_config.merge_net(saved, configured, self._explicit_net)
        model = {"class_path": config.model.class_path, "init_args": {"net": net}}
        self.config = self.parser.parse_object({subcommand: {"model": model}}, self.config)

    def _experiment_dir(self, config: Any) -> Path:
        root = config.trainer.get("default_root_dir") or os.getcwd()
        return runs.experiment_dir(root, config.experiment)

    def _active_config(self) -> Any:
        """The config of the running subcommand (or the whole config when run=False)."""
        return self.config[self.subcommand] if self.subcommand else self.config

    def before_instantiate_classes(self) -> None:
        config = self._active_config()
        _name_experiment(config)
        trainer = config.trainer
        accelerator = trainer.get("accelerator")
        on_gpu = torch.cuda.is_available() and (accelerator is None or accelerator in ("auto", "gpu", "cuda"))
        if trainer.get("precision") is None and on_gpu:
            trainer.precision = "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
        # A test/validate/predict run must not overwrite the config of the fit run it logs into.
        self.save_config_kwargs["config_filename"] = (
            "config.yaml" if self.subcommand == "fit" else f"config_{self.subcommand}.yaml"
        )

    # -- trainer ------------------------------------------------------------------------------

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        config = self._active_config()
        if self._checkpoint is not None and isinstance(self.model, Task):
            checkpoint_config.check_weights_fit(self.model, self._checkpoint, config.ckpt_path, self._explicit_net)
        if self.subcommand in ("export", "serve"):  # no training loop: no logger, run folder or callbacks
            kwargs.update(logger=False, callbacks=[], enable_checkpointing=False, enable_progress_bar=False)
            return super().instantiate_trainer(**kwargs)
        trainer_init = self._get(self.config_init, "trainer", default={})
        callbacks = list(trainer_init.get("callbacks") or [])
        logger = trainer_init.get("logger")
        fast_dev_run = bool(trainer_init.get("fast_dev_run"))
        if logger in (None, True) and not fast_dev_run:
            version = self._version_for_run(config)
            logger = TensorBoardLogger(
                save_dir=self._experiment_dir(config).parent,
                name=config.experiment,
                version=version,
                default_hp_metric=False,
            )
            if version is not None:
                # where Lightning's SLURM auto-requeue saves and finds its hpc_ckpt_N.ckpt: the run folder
                kwargs.setdefault("default_root_dir", str(self._experiment_dir(config) / f"version_{version}"))
        if logger not in (None, False) and not fast_dev_run:
            if not any(isinstance(c, LearningRateMonitor) for c in callbacks):
                callbacks.append(LearningRateMonitor())
        if trainer_init.get("enable_checkpointing") is not False and not any(
            isinstance(c, ModelCheckpoint) for c in callbacks
        ):
            callbacks.extend(default_checkpoints(self.model.monitor, self.model.monitor_mode))
        concerns = run_concerns(config.experiment, flat_config.flatten(config.as_dict()), self._run_tags)
        callbacks.extend(c for c in concerns if not any(type(c) is type(d) for d in callbacks))
        callbacks.extend(self._extra_callbacks)
        if self.subcommand == "predict" and not any(isinstance(c, PredictionWriter) for c in callbacks):
            callbacks.append(PredictionWriter())
        if trainer_init.get("enable_progress_bar") is not False and not any(
            isinstance(c, ProgressBar) for c in callbacks
        ):
            callbacks.append(TQDMProgressBar(refresh_rate=PROGRESS_REFRESH_STEPS))
        if not trainer_init.get("plugins"):
            kwargs.setdefault("plugins", [AtomicCheckpointIO()])
        if trainer_init.get("profiler") is None:  # --trainer.profiler simple|advanced|pytorch still wins
            kwargs.setdefault("profiler", lean_loop.NoOpProfiler())
        kwargs.setdefault("logger", logger)
        kwargs.setdefault("callbacks", callbacks)
        return super().instantiate_trainer(**kwargs)

    def _version_for_run(self, config: Any) -> int | None:
        if self._run_version is not None:  # resuming or evaluating an earlier run: log into it
            return self._run_version
        if self.subcommand == "fit" and not config.get("ckpt_path"):
            requeued = requeue.requeued_run(self._experiment_dir(config))
            if requeued is not None:  # a SLURM job requeued after preemption: its own run, on every rank
                self._run_version = requeued
                return requeued
        if rank_zero_only.rank != 0:
            inherited = os.environ.get(RUN_VERSION_ENV)
            if inherited is not None:  # a DDP worker started by rank zero: the same run
                return int(inherited)
            return None  # ranks started by torchrun/SLURM: rank zero's folder, by broadcast
        version = runs.claim_next_version(self._experiment_dir(config))
        requeue.record_job(self._experiment_dir(config) / f"version_{version}")
        os.environ[RUN_VERSION_ENV] = str(version)  # inherited by the worker processes Lightning starts
        return version

    # -- after the run ------------------------------------------------------------------------

    def after_fit(self) -> None:
        trainer = self.trainer
        log_dir = trainer.log_dir  # a collective call under DDP: every rank makes it
        if not trainer.is_global_zero or trainer.fast_dev_run or not self._report:
            return
        ckpt = trainer.checkpoint_callback
        if isinstance(ckpt, ModelCheckpoint) and ckpt.best_model_path:
            score = ckpt.best_model_score
            shown = f"{score.item():.4g}" if score is not None else "n/a"
            print(f"Best checkpoint: {ckpt.best_model_path}  ({ckpt.monitor} = {shown})")
        final = {k: v for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        if final:
            print("Final " + ", ".join(f"{k} = {v.item():.4g}" for k, v in sorted(final.items())))
        if log_dir:
            print(f"Logs: {log_dir}  (tensorboard --logdir {Path(log_dir).parent.parent})")


_NOISE = (
    "Given value",
    "Expected a <class 'NoneType'>",
    "Subtypes:",
    "Errors:",
    "Does not validate against any of the Union subtypes",
    "Problem with given class_path",
)


def condense_error(message: str) -> str:
    """One line out of jsonargparse's nested report: the innermost reasons, without the dumps."""
    lines = [re.sub(r"^\s*-\s+", "", line).strip() for line in message.splitlines()]
    kept = [line for line in lines if line and not line.startswith(_NOISE)]
    text = " ".join(kept) if kept else " ".join(message.split())
    return text if len(text) <= 400 else text[:397] + "..."


def main(args: Any = None) -> None:
    """Entry point of ``python -m experiments`` and the ``litexp`` script.

    Mistakes a user can make (a bad value, a missing file, no network, a full disk) end with one line
    naming the option and the fix, exit code 2; LITEXP_TRACEBACK=1 shows the full traceback instead.
    """
    tokens = sys.argv[1:] if args is None else list(args)
    try:
        if tokens and tokens[0] == "runs":  # not a Lightning subcommand: it reads run folders, trains nothing
            from experiments import run_table

            run_table.main([str(t) for t in tokens[1:]])
            return
        if tokens and tokens[0] == "sweep":  # runs `fit` once per trial, in this process
            from experiments import sweep

            sweep.main([str(t) for t in tokens[1:]])
            return
        ExperimentCLI(args=args)
    except (ValueError, OSError, MisconfigurationException, ArgumentError) as err:
        if os.environ.get("LITEXP_TRACEBACK"):
            raise
        rank = rank_zero_only.rank
        if rank == 0:
            print(f"error: {condense_error(str(err))}", file=sys.stderr)
        elif not isinstance(err, NonFiniteLossError):  # that one every rank raises; rank zero says it
            print(f"error (rank {rank}): {condense_error(str(err))}", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        # Lightning destroys only NCCL process groups at exit; a gloo group left to the interpreter's
        # shutdown can abort the process ("terminate called without an active exception", seen in
        # about one CPU DDP run in three) after a run that succeeded
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
