"""The run folder: the one place that builds and parses the paths of a run.

``<root>/lightning_logs/<experiment>/version_N/`` holds ``config.yaml`` (``config_<sub>.yaml`` for
the evaluation commands), the TensorBoard event files, ``checkpoints/`` (``best-*.ckpt``,
``last.ckpt``), ``summary.json``, ``predictions/``, ``export/``, with MLflow ``mlflow.json`` and, on
SLURM, ``slurm_job_id``; ``lightning_logs/mlruns`` is the local MLflow store, not an experiment. The
CLI builds a :class:`RunFolder` once per run and hands it to the logger, the callbacks and the
commands; nothing else spells these names.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

LOGS = "lightning_logs"
BEST_PREFIX = "best-"
LAST_NAME = "last.ckpt"
SUMMARY_NAME = "summary.json"
SLURM_JOB_NAME = "slurm_job_id"
MLFLOW_RECORD_NAME = "mlflow.json"
#: the local MLflow store beside the experiments (not an experiment itself)
MLRUNS = "mlruns"
_VERSION = re.compile(r"^version_(\d+)$")
_EPOCH = re.compile(r"epoch(\d+)")


def version_of(folder: Path) -> int | None:
    """N for a folder named ``version_N``, else None."""
    found = _VERSION.match(folder.name)
    return int(found.group(1)) if found else None


def epoch_in_name(path: Path) -> tuple[int, str]:
    """``(epoch, name)`` of a ``best-epochNNN.ckpt`` name (-1 when it holds none): a sort key."""
    found = _EPOCH.search(path.name)
    return (int(found.group(1)) if found else -1, path.name)


@dataclass(frozen=True)
class RunFolder:
    """One run's folder and the names of everything inside it."""

    path: Path

    @classmethod
    def of_checkpoint(cls, checkpoint: str | os.PathLike) -> RunFolder:
        """The run a checkpoint belongs to (``version_N`` for ``version_N/checkpoints/x.ckpt``), else the
        checkpoint's own folder (a checkpoint copied elsewhere exports and predicts next to itself).
        """
        path = Path(checkpoint).resolve()
        return cls(path.parent.parent if path.parent.name == "checkpoints" else path.parent)

    @property
    def version(self) -> int | None:
        """N of ``version_N`` (None for a folder named otherwise)."""
        return version_of(self.path)

    @property
    def experiment(self) -> str:
        """The name of the experiment the run belongs to."""
        return self.path.parent.name

    @property
    def checkpoints(self) -> Path:
        """The run's checkpoint folder."""
        return self.path / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        """The run's ``last.ckpt``."""
        return self.checkpoints / LAST_NAME

    def best_checkpoints(self) -> list[Path]:
        """The ``best-*.ckpt`` files, oldest epoch first."""
        return sorted(self.checkpoints.glob(f"{BEST_PREFIX}*.ckpt"), key=epoch_in_name)

    @property
    def summary(self) -> Path:
        """The run's ``summary.json``."""
        return self.path / SUMMARY_NAME

    def config(self, subcommand: str = "fit") -> Path:
        """``config.yaml`` of the fit; ``config_<subcommand>.yaml`` of a test/validate/predict run on it."""
        return self.path / config_name(subcommand)

    @property
    def predictions(self) -> Path:
        """Where ``predict`` writes the run's predictions."""
        return self.path / "predictions"

    @property
    def analysis(self) -> Path:
        """Where a classification ``test`` writes its error analysis."""
        return self.path / "analysis"

    @property
    def export(self) -> Path:
        """Where ``export`` writes the run's exported model."""
        return self.path / "export"

    @property
    def slurm_job(self) -> Path:
        """The file that records the SLURM job the run belongs to."""
        return self.path / SLURM_JOB_NAME

    @property
    def mlflow_record(self) -> Path:
        """The MLflow run this run logs into (see :mod:`experiments.tracking`)."""
        return self.path / MLFLOW_RECORD_NAME


def config_name(subcommand: str) -> str:
    """The file a subcommand's config is saved as in a run folder."""
    return "config.yaml" if subcommand == "fit" else f"config_{subcommand}.yaml"


@dataclass(frozen=True)
class ExperimentFolder:
    """``<root>/lightning_logs/<experiment>``: the runs of one experiment, its sweeps and cross-validations."""

    path: Path

    @classmethod
    def at(cls, root: str | os.PathLike, experiment: str) -> ExperimentFolder:
        """The folder of ``experiment`` under ``root``'s ``lightning_logs``."""
        return cls(Path(root) / LOGS / experiment)

    @classmethod
    def all_under(cls, root: str | os.PathLike) -> list[ExperimentFolder]:
        """Every experiment folder under ``root``'s ``lightning_logs`` (MLflow's own folder left out)."""
        logs = Path(root) / LOGS
        if not logs.is_dir():
            return []
        return [cls(p) for p in sorted(logs.iterdir()) if p.is_dir() and p.name != MLRUNS]

    @property
    def name(self) -> str:
        """The experiment's name."""
        return self.path.name

    @property
    def sweeps(self) -> Path:
        """Where the experiment's sweep studies are kept."""
        return self.path / "sweeps"

    @property
    def cross_validations(self) -> Path:
        """Where the experiment's cross-validations are kept (``cv/<name>/``)."""
        return self.path / "cv"

    def versions(self) -> list[int]:
        """Version numbers present, ascending."""
        if not self.path.is_dir():
            return []
        found = (version_of(p) for p in self.path.iterdir() if p.is_dir())
        return sorted(v for v in found if v is not None)

    def run(self, version: int) -> RunFolder:
        """The run folder ``version_<version>``."""
        return RunFolder(self.path / f"version_{version}")

    def runs(self) -> list[RunFolder]:
        """The experiment's runs, oldest version first."""
        return [self.run(v) for v in self.versions()]

    def holding(self, checkpoint: str | os.PathLike) -> RunFolder | None:
        """The run of this experiment whose folder (or its ``checkpoints/``) holds ``checkpoint``."""
        path = Path(checkpoint).resolve()
        for folder in (path.parent, path.parent.parent):
            if version_of(folder) is not None and folder.parent == self.path.resolve():
                return self.run(version_of(folder))
        return None

    def claim_next(self) -> RunFolder:
        """Create ``version_N`` with the next free N.

        ``mkdir`` either creates the folder or fails, atomically, so two runs started at the same
        moment never share a version (TensorBoardLogger alone picks "max + 1" without claiming it).
        """
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OSError(f"cannot create the run folder {self.path} ({err.strerror or err}); set "
                          "--trainer.default_root_dir to a writable folder") from None
        existing = self.versions()
        version = existing[-1] + 1 if existing else 0
        while True:
            run = self.run(version)
            try:
                run.path.mkdir()
                return run
            except FileExistsError:
                version += 1
            except OSError as err:
                raise OSError(f"cannot create a run folder in {self.path} ({err.strerror or err}); set "
                              "--trainer.default_root_dir to a writable folder") from None
