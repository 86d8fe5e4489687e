"""The Trainer with the commands on a trained model (``calibrate``, ``export``, ``serve``; see
:mod:`experiments.commands`).

LightningCLI builds a subcommand's options from the Trainer method of that name (its signature and
``Args:`` docstring), so each such command is a method here that hands over to its own module.
Training, evaluation and prediction are Lightning's own, unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch import LightningDataModule, LightningModule, Trainer

from datamodules.images.preparation import DEFAULT_MAX_PIXELS
from experiments.runs.folder import RunFolder


class ExperimentTrainer(Trainer):
    """Lightning's Trainer with the project's own subcommands (``calibrate``, ``export``, ``serve``) and the run
    folder it fills.
    """

    #: the run this Trainer trains or evaluates into, set by the CLI (None outside it)
    run_folder: RunFolder | None = None

    def export(
        self,
        model: LightningModule,
        datamodule: LightningDataModule | None = None,
        ckpt_path: str | None = None,
        parity_batch: int = 32,
    ) -> dict[str, Any]:
        """Export a checkpoint as ONNX and torch.export files with its preprocessing, parity proven.

        Args:
            model: the task, as configured.
            datamodule: the data module (its preprocessing and a batch of its data).
            ckpt_path: best, last, or the path of a .ckpt file.
            parity_batch: samples of the data module's predict split each file is checked on.
        """
        from experiments.deploy.export import export_checkpoint

        return export_checkpoint(model, datamodule, str(ckpt_path), parity_batch, self.run_folder)

    #: the config of the command being run, as a dict (set by the CLI; ``tune`` writes it back with its finding)
    config: dict[str, Any] | None = None

    def tune(
        self,
        model: LightningModule,
        datamodule: LightningDataModule | None = None,
        min_lr: float = 1e-6,
        max_lr: float = 1.0,
        num_training: int = 100,
        batch_size: bool = False,
        max_batch_size: int = 1024,
    ) -> dict[str, Any]:
        """Find a learning rate (and a batch size) with Lightning's finders through the config's optimizer and schedule.

        Writes ``lightning_logs/<experiment>/tune/tuned.yaml`` (the config with the suggestion, for ``fit -c``) and
        ``lr_find.png``.

        Args:
            model: the task, as configured.
            datamodule: the data module (its training split).
            min_lr: the lowest rate tried.
            max_lr: the highest rate tried (the search stops earlier once the loss diverges).
            num_training: rates tried, one training step each.
            batch_size: first find the largest batch size that runs (doubling; capped by the split and max_batch_size).
            max_batch_size: the batch-size finder's cap.
        """
        from experiments.tune import run_tune

        config = dict(self.config or {})
        folder = self.tune_folder or Path(self.default_root_dir) / "tune"
        return run_tune(self, model, datamodule, config, folder, min_lr, max_lr, num_training, batch_size,
                        max_batch_size)

    #: where ``tune`` writes (set by the CLI: the experiment's ``tune/`` folder)
    tune_folder: Path | None = None

    def calibrate(
        self,
        model: LightningModule,
        datamodule: LightningDataModule | None = None,
        ckpt_path: str | None = None,
        max_iter: int = 100,
    ) -> dict[str, Any] | None:
        """Fit a classifier checkpoint's temperature on the validation split and store it in the checkpoint.

        Args:
            model: the task, as configured.
            datamodule: the data module (its validation split).
            ckpt_path: best, last, or the path of a .ckpt file.
            max_iter: LBFGS iterations at most.
        """
        from experiments.analysis.calibration import calibrate

        return calibrate(self, model, datamodule, str(ckpt_path), self.run_folder, max_iter)

    def serve(
        self,
        model: LightningModule,
        datamodule: LightningDataModule | None = None,
        ckpt_path: str | None = None,
        host: str = "127.0.0.1",
        port: int = 8000,
        max_batch_size: int = 16,
        timeout: float = 30.0,
        max_upload_mb: float = 10.0,
        max_image_pixels: int = DEFAULT_MAX_PIXELS,
        api_key: str | None = None,
    ) -> None:
        """Serve a checkpoint's predictions over HTTP with LitServe.

        Args:
            model: the task, as configured.
            datamodule: the data module (its preprocessing and class names).
            ckpt_path: best, last, or the path of a .ckpt file.
            host: address to listen on (0.0.0.0 for every interface).
            port: port to listen on.
            max_batch_size: requests batched into one forward pass.
            timeout: seconds a request may take before it fails.
            max_upload_mb: largest request body in MiB; larger ones get HTTP 413.
            max_image_pixels: largest image (width x height, read from its header) decoded; larger get 413.
            api_key: require this X-API-Key header (401 without it); default: LIT_SERVER_API_KEY if set.
        """
        from experiments.deploy.serve import serve_checkpoint

        serve_checkpoint(model, datamodule, str(ckpt_path), host, port, max_batch_size, timeout, max_upload_mb,
                         max_image_pixels, api_key)
