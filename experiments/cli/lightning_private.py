"""The one private name of Lightning this project relies on, checked when it is imported.

``LightningCLI._parse_ckpt_path`` runs right after parsing and applies every hyperparameter saved in
``--ckpt_path``'s checkpoint over what the user typed. Lightning 2.6 has no public hook for that
step, so :class:`experiments.cli.ExperimentCLI` replaces this method (see
:mod:`experiments.checkpoints.net_options` for the rule it applies instead). If a Lightning release
renames or drops it, the override would silently stop taking effect; this module fails the import
instead, naming the fix.
"""

from __future__ import annotations

import inspect

import lightning
from lightning.pytorch.cli import LightningCLI

PARSE_CKPT_PATH = "_parse_ckpt_path"


def _check() -> None:
    method = getattr(LightningCLI, PARSE_CKPT_PATH, None)
    called = f"self.{PARSE_CKPT_PATH}()" in inspect.getsource(LightningCLI.__init__)
    if method is None or list(inspect.signature(method).parameters) != ["self"] or not called:
        raise ImportError(
            f"lightning {lightning.__version__}: LightningCLI.{PARSE_CKPT_PATH}(self) is gone, changed, or no longer "
            "called after parsing; litexp needs it to keep the command line above a checkpoint's "
            "hyperparameters: install lightning>=2.6,<2.7"
        )


_check()
