"""The LightningCLI subclass: experiments as runs.

It adds what an experiment framework needs on top of Lightning: runs grouped by experiment (one
:class:`~experiments.runs.RunFolder` per run, built here and handed to the logger, the callbacks and
the commands), default callbacks, ``--ckpt_path best|last`` that work across processes, the
checkpoint's net over the YAML's, and mixed precision by default on a GPU.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import yaml
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch import LightningDataModule
from lightning.pytorch.callbacks import (
    BackboneFinetuning,
    LearningRateMonitor,
    ModelCheckpoint,
    ProgressBar,
    TQDMProgressBar,
)
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn
from typing_extensions import override

from datamodules import CIFAR10DataModule, ImageFolderDataModule, MNISTDataModule, SinDataModule  # noqa: F401, E402

# every bundled data module and task imported, so that LightningCLI knows them by their short class names
from datamodules.base.folds import Fold
from datamodules.folder.from_checkpoint import CheckpointData
from experiments import commands, tracking
from experiments.callbacks import Preemption
from experiments.checkpoints import AtomicCheckpointIO, net_options, shipped, start_from
from experiments.cli import defaults
from experiments.cli.lightning_private import PARSE_CKPT_PATH
from experiments.cli.trainer import ExperimentTrainer
from experiments.deploy.prediction_writer import PredictionWriter
from experiments.runs import checkpoints, flat_config, slurm, trained_on
from experiments.runs.folder import ExperimentFolder, RunFolder, config_name
from experiments.runtime import fast_paths, known_noise
from experiments.terminal import listed
from lit_models import ImageClassifier, Regressor  # noqa: F401, E402
from lit_models.inference import CHECKPOINT_KEY
from lit_models.task import Task

#: how rank zero tells the DDP workers it launches which run folder it claimed
RUN_VERSION_ENV = "LITEXP_RUN_VERSION"

fast_paths.drop_nvml_probe_without_driver()  # `import lightning` above set it


def name_experiment(config: Any) -> None:
    """Default the experiment's name to the stem of the first config file."""
    if not config.get("experiment"):
        files = config.get("config") or []
        config.experiment = Path(str(files[0])).stem if files else "default"


def _check_backbone_for(callbacks: list[Any], model: Any) -> None:
    """``BackboneFinetuning`` (the unfreeze preset) needs a net with a pretrained ``backbone``: one line
    before any run folder is made, instead of Lightning's error once training has started.
    """
    finetuning = next((c for c in callbacks if isinstance(c, BackboneFinetuning)), None)
    net = getattr(model, "net", None)
    if finetuning is not None and not isinstance(getattr(net, "backbone", None), nn.Module):
        raise ValueError(
            f"{type(finetuning).__name__} (experiments/presets/unfreeze.yaml) unfreezes a pretrained backbone, "
            f"and {type(net).__name__} has none: drop that preset, or use a net with one (AlexNetClassifier)"
        )


def _default_plugins(subcommand: str, callbacks: list[Any]) -> list[Any]:
    """Atomic checkpoint writes; on a SLURM batch fit, requeue on SIGUSR1 at a step every rank agrees on
    (the ``Preemption`` callback, added to ``callbacks``) instead of from Lightning's signal handler.
    """
    plugins: list[Any] = [AtomicCheckpointIO()]
    if subcommand == "fit" and slurm.slurm_job_id() is not None:
        plugins.append(SLURMEnvironment(auto_requeue=False))
        if not any(isinstance(c, Preemption) for c in callbacks):
            callbacks.append(Preemption())
    return plugins


class ExperimentCLI(LightningCLI):
    """LightningCLI with experiment-aware logging, checkpointing and ``best``/``last`` lookup."""

    def __init__(self, args: Any = None, run: bool = True, extra_callbacks: list[Any] | None = None,
                 run_tags: dict[str, Any] | None = None, report: bool = True, **kwargs: Any) -> None:
        """``extra_callbacks``, ``run_tags`` (added to summary.json and the hyperparameters) and ``report``
        (the lines printed after a fit) are for callers that run experiments in-process (sweeps).
        """
        known_noise.silence_known_noise()
        self._extra_callbacks = list(extra_callbacks or [])
        self._run_tags = dict(run_tags or {})
        self._report = report
        #: the run this command trains or evaluates into (None: no run folder, e.g. a fast_dev_run)
        self.run_folder: RunFolder | None = None
        self._explicit_net: set[str] = set()
        self._checkpoint: dict[str, Any] | None = None  # --ckpt_path's, memory-mapped, read once
        if args is None or isinstance(args, (list, tuple)):  # a checkpoint command without a config: the checkpoint's
            tokens = [str(t) for t in (sys.argv[1:] if args is None else args)]
            own = shipped.without_config(tokens)
            args = own if own is not tokens else args
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        # Parse errors raise (instead of printing the whole usage) so the entry point can say them in a line.
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
    @override
    def subcommands() -> dict[str, set[str]]:
        """Lightning's four, and the commands on a trained model (methods of :class:`ExperimentTrainer`)."""
        return {**LightningCLI.subcommands(), **{name: {"model", "datamodule"} for name in commands.of_kind("model")}}

    @override
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--experiment",
            type=str | None,
            default=None,
            help="Name of the experiment: runs go to <default_root_dir>/lightning_logs/<experiment>/"
            "version_N. Default: the stem of the first config file.",
        )
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=False,
            help="With fit: when training ends, test the best checkpoint in the same process, into the same "
            "run and summary.json (as `test --ckpt_path best` would; under DDP every test sample once).",
        )
        parser.add_argument(
            "--calibrate",
            type=bool,
            default=False,
            help="With fit: when training ends, fit the best checkpoint's temperature on the validation split "
            "(as `calibrate --ckpt_path best` would), before --test_after_fit tests it.",
        )
        parser.add_argument(
            "--cv_fold",
            type=Fold | None,
            default=None,
            help="A cross-validation run (set by `cv`): train on the data module's pool without this fold, "
            "validate on it. Kept in the run's config.yaml, so `fit -c <run>/config.yaml` repeats the run.",
        )
        parser.add_argument(
            "--study",
            type=str | None,
            default=None,
            help="With --ckpt_path best: choose among the trials of this sweep study (trials are left out "
            "otherwise).",
        )

    # -- parsing ------------------------------------------------------------------------------

    @override
    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        tokens = sys.argv[1:] if args is None else args if isinstance(args, (list, tuple)) else []
        self._explicit_net = net_options.explicit_net_options([str(t) for t in tokens])
        config = self.config[subcommand]
        name_experiment(config)
        ckpt_path = config.get("ckpt_path")
        command = commands.BY_NAME.get(subcommand)
        for option in ("test_after_fit", "calibrate"):
            if config.get(option) and subcommand != "fit":
                raise ValueError(f"--{option} is an option of fit, not {subcommand}; drop it")
        if command is not None and command.needs_checkpoint and not ckpt_path:
            raise ValueError(f"{subcommand} needs trained weights: pass --ckpt_path best, last or the path of a .ckpt")
        if ckpt_path in ("best", "last"):
            # Resolve before LightningCLI reads the checkpoint's hyperparameters.
            # paths as the data module resolves them: against the working folder
            data = trained_on.configured_data(config.data.get("init_args"), os.getcwd())
            self.run_folder, path, chosen = checkpoints.resolve(self._experiment(config), ckpt_path,
                                                                config.get("study"), data)
            if self._report and rank_zero_only.rank == 0:
                print(chosen, flush=True)
            config.ckpt_path = str(path)
        elif ckpt_path and not Path(ckpt_path).is_file():
            raise FileNotFoundError(
                f"--ckpt_path {ckpt_path}: no such file; pass best, last, or the path of a .ckpt file"
            )
        elif ckpt_path:  # a checkpoint inside one of this experiment's runs: evaluate into that run
            self.run_folder = self._experiment(config).holding(ckpt_path)
        if config.get("ckpt_path"):
            net_class = config.get("model.init_args.net.class_path")
            self._checkpoint = checkpoints.check_experiment(Path(config.ckpt_path), config.experiment, net_class)
        elif subcommand == "fit":  # weights from another run of ours: its checkpoint, its normalisation
            started = start_from.apply(config, self._root(config), [str(t) for t in tokens])
            if started and self._report and rank_zero_only.rank == 0:
                print(started, flush=True)

    @override
    def apply_checkpoint_net(self) -> None:
        """Replaces LightningCLI's ``_parse_ckpt_path``: of a checkpoint's hyperparameters only the net's
        are applied (see :mod:`experiments.checkpoints.net_options` for the rule).
        """
        if self._checkpoint is None:
            return
        subcommand = self.config.subcommand
        config = self.config[subcommand]
        record = self._checkpoint.get(CHECKPOINT_KEY)
        data = config.get("data")
        data = data.as_dict() if hasattr(data, "as_dict") else dict(data or {})
        if subcommand in shipped.COMMANDS and isinstance(record, dict) and data.get("class_path") != shipped.STAND_IN \
                and shipped.data_is_gone(data, os.getcwd()):  # the training folder is not on this machine
            self.config = self.parser.parse_object({subcommand: {"data": shipped.stand_in_for(data, record)}},
                                                   self.config)
            config = self.config[subcommand]
        saved = net_options.saved_net(self._checkpoint)
        if saved is None:
            return
        configured = config.get(net_options.NET)
        configured = configured.as_dict() if hasattr(configured, "as_dict") else dict(configured or {})
        net = net_options.merge_net(saved, configured, self._explicit_net, evaluates=subcommand != "fit")
        model = {"class_path": config.model.class_path, "init_args": {"net": net}}
        self.config = self.parser.parse_object({subcommand: {"model": model}}, self.config)

    def _root(self, config: Any) -> str:
        return config.trainer.get("default_root_dir") or os.getcwd()

    def _experiment(self, config: Any) -> ExperimentFolder:
        return ExperimentFolder.at(self._root(config), config.experiment)

    def _active_config(self) -> Any:
        """The config of the running subcommand (or the whole config when run=False)."""
        return self.config[self.subcommand] if self.subcommand else self.config

    @override
    def before_instantiate_classes(self) -> None:
        config = self._active_config()
        name_experiment(config)
        trainer = config.trainer
        if trainer.get("precision") is None:
            trainer.precision = defaults.precision_on(trainer.get("accelerator"))
        # A test/validate/predict run must not overwrite the config of the fit run it logs into.
        self.save_config_kwargs["config_filename"] = config_name(self.subcommand or "fit")
        if self.subcommand not in commands.of_kind("model"):  # before any run folder: a dead server is one line
            tracking.prepare_loggers(config, config.trainer.get("default_root_dir") or os.getcwd(),
                                     config.experiment, self.run_folder)

    @override
    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        fold = self._active_config().get("cv_fold")
        if fold is None:
            return
        if not hasattr(self.datamodule, "use_fold"):
            raise ValueError(f"--cv_fold: {type(self.datamodule).__name__} cannot be cross-validated (it has no "
                             "use_fold); use a data module built on datamodules.InMemoryDataModule")
        self.datamodule.use_fold(fold if isinstance(fold, Fold) else Fold(**dict(fold)))

    # -- trainer ------------------------------------------------------------------------------

    @override
    def instantiate_trainer(self, **kwargs: Any) -> Any:
        config = self._active_config()
        if self._checkpoint is not None and isinstance(self.model, Task):
            net_options.check_weights_fit(self.model, self._checkpoint, config.ckpt_path, self._explicit_net)
        if self.subcommand in commands.of_kind("model"):  # no training loop: no logger, run folder or callbacks
            kwargs.update(logger=False, callbacks=[], enable_checkpointing=False, enable_progress_bar=False)
            trainer = super().instantiate_trainer(**kwargs)
            if config.get("ckpt_path"):
                trainer.run_folder = self.run_folder or RunFolder.of_checkpoint(config.ckpt_path)
            else:  # tune: no checkpoint; it writes the config with its finding into the experiment's tune/
                trainer.config = yaml.safe_load(self.parser.dump(self.config, skip_check=True))[self.subcommand]
                trainer.tune_folder = self._experiment(config).path / "tune"
            return trainer
        trainer_init = self._get(self.config_init, "trainer", default={})
        callbacks = list(trainer_init.get("callbacks") or [])
        _check_backbone_for(callbacks, self.model)
        logger = trainer_init.get("logger")
        fast_dev_run = bool(trainer_init.get("fast_dev_run"))
        if logger is not False and not fast_dev_run:
            # TensorBoard first (the run folder, summary, runs and HPARAMS are built on it), the config's beside it
            added = [] if logger in (None, True) else list(logger) if isinstance(logger, (list, tuple)) else [logger]
            logger = [self._tensorboard(config, kwargs), *added]
            tracking.place_in_run(added, self.run_folder)
            recorded = tracking.recorded_logger(self.run_folder, added)  # this run's MLflow run, when it has one
            if recorded is not None:
                logger.append(recorded)
        else:
            self.run_folder = None  # no logger, or a fast_dev_run: no run folder of ours
        if logger not in (None, False) and not fast_dev_run:
            if not any(isinstance(c, LearningRateMonitor) for c in callbacks):
                callbacks.append(LearningRateMonitor())
        if trainer_init.get("enable_checkpointing") is not False and not any(
            isinstance(c, ModelCheckpoint) for c in callbacks
        ):
            callbacks.extend(defaults.checkpoints(self.model.monitor, self.model.monitor_mode))
        concerns = defaults.run_callbacks(config.experiment, self.run_folder, flat_config.flatten(config.as_dict()),
                                          self._run_tags)
        callbacks.extend(c for c in concerns if not any(type(c) is type(d) for d in callbacks))
        callbacks.extend(self._extra_callbacks)
        if self.subcommand == "predict" and not any(isinstance(c, PredictionWriter) for c in callbacks):
            callbacks.append(PredictionWriter(run=self.run_folder))
        if trainer_init.get("enable_progress_bar") is not False and not any(
            isinstance(c, ProgressBar) for c in callbacks
        ):
            callbacks.append(TQDMProgressBar(refresh_rate=defaults.PROGRESS_REFRESH_STEPS))
        if not trainer_init.get("plugins"):
            kwargs.setdefault("plugins", _default_plugins(self.subcommand, callbacks))
        if trainer_init.get("profiler") is None:  # --trainer.profiler simple|advanced|pytorch still wins
            kwargs.setdefault("profiler", fast_paths.NoOpProfiler())
        kwargs.setdefault("logger", logger)
        kwargs.setdefault("callbacks", callbacks)
        trainer = super().instantiate_trainer(**kwargs)
        trainer.run_folder = self.run_folder
        return trainer

    def _tensorboard(self, config: Any, kwargs: dict[str, Any]) -> TensorBoardLogger:
        """The run's TensorBoard logger, writing into its run folder."""
        run = self._run_for(config)
        if run is None:  # a DDP rank started by torchrun/SLURM: rank zero's version, by the logger's broadcast
            experiment = self._experiment(config).path
            return TensorBoardLogger(save_dir=experiment.parent, name=experiment.name, default_hp_metric=False)
        # where Lightning's SLURM auto-requeue saves and finds its hpc_ckpt_N.ckpt: the run folder
        kwargs.setdefault("default_root_dir", str(run.path))
        experiment = run.path.parent
        return TensorBoardLogger(save_dir=experiment.parent, name=experiment.name, version=run.version,
                                 default_hp_metric=False)

    def _run_for(self, config: Any) -> RunFolder | None:
        """The run this command logs into: the one it resumes or evaluates, a requeued SLURM job's own, the
        one rank zero claimed (DDP workers it started), or a new one; None on ranks that learn it later.
        """
        experiment = self._experiment(config)
        if self.run_folder is None and self.subcommand == "fit" and not config.get("ckpt_path"):
            self.run_folder = slurm.requeued_run(experiment)  # a SLURM job requeued after preemption
        if self.run_folder is not None:
            return self.run_folder
        if rank_zero_only.rank != 0:
            inherited = os.environ.get(RUN_VERSION_ENV)
            if inherited is not None:  # a DDP worker started by rank zero: the same run
                self.run_folder = experiment.run(int(inherited))
            return self.run_folder
        self.run_folder = experiment.claim_next()
        slurm.record_job(self.run_folder)
        os.environ[RUN_VERSION_ENV] = str(self.run_folder.version)  # inherited by the worker processes Lightning starts
        return self.run_folder

    # -- before a command on a checkpoint -------------------------------------------------------

    def _check_checkpoint_fits_data(self) -> None:
        """A checkpoint trained on other classes than the configured data's is one line, before anything is
        written into its run: its answers would carry the wrong class names, or its head would not load.
        """
        if self._checkpoint is None:
            return
        path = self._active_config().get("ckpt_path")
        names = [str(n) for n in getattr(self.datamodule, "class_names", None) or []]  # lists a folder; decodes nothing
        if names:
            self._check_classes(path, names)
        record = self._checkpoint.get(CHECKPOINT_KEY)  # what the checkpoint says of its data (size, normalisation)
        if isinstance(record, dict) and not isinstance(self.datamodule, CheckpointData):
            contradicted = shipped.contradiction(record, self.datamodule, path)
            if contradicted:
                raise ValueError(contradicted)

    def _check_classes(self, path: str, names: list[str]) -> None:
        recorded = trained_on.recorded_data(self.run_folder) if self.run_folder is not None else None
        if recorded is not None and recorded.get("classes") and recorded["classes"] != names:
            raise ValueError(f"--ckpt_path {path} was trained on {trained_on.describe(recorded)} with classes "
                             f"{listed(recorded['classes'])}; the configured data has {listed(names)}: pass a "
                             "checkpoint trained on these classes, or the data that run was trained on")
        saved = (net_options.saved_net(self._checkpoint) or {}).get("init_args") or {}
        count = saved.get("num_classes")
        if isinstance(count, int) and count != len(names):
            raise ValueError(f"--ckpt_path {path} has a head for {count} classes; the configured data has "
                             f"{listed(names)}: pass a checkpoint trained on these classes")

    def before_validate(self) -> None:
        """Refuse a checkpoint trained on other classes before anything is written."""
        self._check_checkpoint_fits_data()

    before_test = before_predict = before_export = before_serve = before_calibrate = before_validate

    # -- after the run ------------------------------------------------------------------------

    def after_fit(self) -> None:
        """Print the fit's report and, with ``--test_after_fit``, test the best checkpoint."""
        trainer = self.trainer
        if trainer.is_global_zero and not trainer.fast_dev_run and self._report:
            self._report_fit(trainer)
        finished = not trainer.fast_dev_run and not trainer.interrupted
        if self._active_config().get("calibrate") and finished:
            self._calibrate_best(trainer)
        if self._active_config().get("test_after_fit") and finished:
            self._test_best(trainer)

    def _calibrate_best(self, trainer: Any) -> None:
        """``--calibrate``: the best checkpoint's temperature, fitted by a Trainer of its own on one device (no
        logger or callbacks: the run's curves and summary stay the fit's).
        """
        path = _best_path(trainer)
        if path is None:
            raise ValueError("--calibrate needs a best checkpoint: fit with a monitored ModelCheckpoint (the default)")
        if trainer.world_size > 1:
            if trainer.is_global_zero:
                print(f"--calibrate: a multi-process fit is calibrated by its own command: python -m experiments "
                      f"calibrate -c CONFIG --ckpt_path {path}")
            return
        calibrator = ExperimentTrainer(accelerator=trainer.accelerator, devices=1, precision=trainer.precision,
                                       logger=False, callbacks=[], enable_checkpointing=False,
                                       enable_progress_bar=False, enable_model_summary=False)
        calibrator.run_folder = self.run_folder
        calibrator.calibrate(self.model, self.datamodule, path)

    def _report_fit(self, trainer: Any) -> None:
        ckpt = trainer.checkpoint_callback
        if isinstance(ckpt, ModelCheckpoint) and ckpt.best_model_path:
            score = ckpt.best_model_score
            shown = f"{score.item():.4g}" if score is not None else "n/a"
            print(f"Best checkpoint: {ckpt.best_model_path}  ({ckpt.monitor} = {shown})")
        final = {k: v for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        if final:
            print("Final " + ", ".join(f"{k} = {v.item():.4g}" for k, v in sorted(final.items())))
        if self.run_folder is not None:
            logs = self.run_folder.path.parent.parent
            print(f"Logs: {self.run_folder.path}  (tensorboard --logdir {logs})")

    def _test_best(self, trainer: Any) -> None:
        """``--test_after_fit``: the best checkpoint (the last weights when nothing is monitored) on the test
        split, every rank taking part as in ``test``; the run's summary and TensorBoard get its metrics.
        """
        path = _best_path(trainer)
        if self._report and trainer.is_global_zero:
            print(f"Testing {path or 'the last weights'} (--test_after_fit)", flush=True)
        trainer.test(self.model, datamodule=self.datamodule, ckpt_path=path, verbose=self._report)


# LightningCLI calls its private _parse_ckpt_path right after parsing; Lightning 2.6 has no public hook
# for that step (checked at import by experiments.cli.lightning_private)
setattr(ExperimentCLI, PARSE_CKPT_PATH, ExperimentCLI.apply_checkpoint_net)


def _best_path(trainer: Any) -> str | None:
    """The monitored best checkpoint of a fit, or None."""
    best = next((c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint) and c.monitor), None)
    return best.best_model_path if best is not None and best.best_model_path else None


