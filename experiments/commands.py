"""Every subcommand of ``python -m experiments``, in one table: the router, ``--help`` and the CLI read it.

Adding a subcommand is one entry here:

- ``lightning``: Lightning's own (fit, validate, test, predict), run by :class:`experiments.cli.ExperimentCLI`.
- ``model``: a command on a trained model (export, serve): a method of the same name on
  :class:`experiments.cli.ExperimentTrainer`, whose signature and ``Args:`` docstring LightningCLI turns
  into the options; it gets the configured task and data module, a checkpoint, no training loop.
- ``standalone``: a command that trains nothing (runs, sweep): ``target`` names its ``main(argv)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Command:
    """One subcommand of ``python -m experiments``: its name, its one-line summary and who runs it."""
    name: str
    summary: str
    kind: Literal["lightning", "model", "standalone"]
    #: ``module:function`` taking the remaining arguments (standalone commands)
    target: str | None = None
    #: refuses to start without ``--ckpt_path``
    needs_checkpoint: bool = False


COMMANDS: tuple[Command, ...] = (
    Command("fit", "train an experiment (--ckpt_path last resumes its newest run)", "lightning"),
    Command("validate", "evaluate a checkpoint on the validation split", "lightning"),
    Command("test", "evaluate a checkpoint on the test split (--ckpt_path best|last|PATH)", "lightning"),
    Command("predict", "write a checkpoint's predictions of a split or a folder of images", "lightning",
            needs_checkpoint=True),
    Command("calibrate", "fit a classifier's temperature on the validation split (probabilities that match "
            "accuracy)", "model", needs_checkpoint=True),
    Command("tune", "find a learning rate (and batch size) through the config's optimizer; writes tuned.yaml",
            "model"),
    Command("export", "write ONNX and torch.export files of a checkpoint, parity proven", "model",
            needs_checkpoint=True),
    Command("serve", "answer predictions over HTTP (LitServe)", "model", needs_checkpoint=True),
    Command("runs", "list the runs: what each reached and which options differed", "standalone",
            target="experiments.runs.table:main"),
    Command("sweep", "search hyperparameters with a resumable Optuna study", "standalone",
            target="experiments.sweep.command:main"),
    Command("cv", "cross-validate: K folds x N seeds, intervals, out-of-fold predictions, --compare", "standalone",
            target="experiments.cv.command:main"),
)

BY_NAME = {command.name: command for command in COMMANDS}


def of_kind(kind: str) -> tuple[str, ...]:
    """The names of the commands of one kind (``lightning``, ``model`` or ``standalone``)."""
    return tuple(c.name for c in COMMANDS if c.kind == kind)


def usage() -> str:
    """The top-level help: every subcommand with its line."""
    width = max(len(c.name) for c in COMMANDS)
    lines = ["usage: python -m experiments SUBCOMMAND [-c experiments/NAME.yaml] [options]", "",
             "subcommands (python -m experiments SUBCOMMAND --help for the options of one):"]
    lines += [f"  {c.name:<{width}}  {c.summary}" for c in COMMANDS]
    return "\n".join(lines)
