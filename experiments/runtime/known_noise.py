"""Known messages of dependencies that say nothing to a user of this project, silenced by their exact text.

Each entry is a message seen in this project's runs, with the reason it does not apply. Only
these texts are dropped: any other warning or log line of Lightning, torch or the project still
shows, and warnings print as one line (``UserWarning: text``) instead of two with a source line.
"""

from __future__ import annotations

import logging
import re
import warnings

#: (message, why it is noise here); ``{n}``, ``{path}`` and ``{any}`` stand for a number, a path and any text
KNOWN_WARNINGS = (
    ("`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec) and "
     "treespec.is_leaf()` instead.", "raised inside Lightning 2.6 by torch 2.14's pytree; nothing a user can change"),
    ("The number of training batches ({n}) is smaller than the logging interval Trainer(log_every_n_steps={n}). "
     "Set a lower value for log_every_n_steps if you want to see logs for the training epoch.",
     "train/loss is logged by global step across epochs, and train/loss_epoch every epoch"),
    ("Checkpoint directory {path} exists and is not empty.",
     "resuming and evaluating write into the run's own folder on purpose"),
    ("LightningCLI's args parameter is intended to run from within Python like if it were from the command line. "
     "To prevent mistakes it is not recommended to provide both args and command line arguments, got: {any}",
     "a sweep runs each trial's fit in its own process with the arguments it built from the command line"),
    ("torch.distributed.nn.functional.all_gather is deprecated, use "
     "torch.distributed._functional_collectives.all_gather_single instead.",
     "raised inside Lightning 2.6's strategy.all_gather (per-rank state at a checkpoint) by torch 2.14"),
    ("Couldn't infer the batch indices fetched from your dataloader: `TensorBatches`",
     "predict batches carry each sample's index; the prediction writer orders rows by it"),
)

KNOWN_LOG_LINES = (
    ("💡 Tip: For seamless cloud logging and experiment tracking, try installing "
     "[litlogger](https://pypi.org/project/litlogger/) to enable LitLogger, which logs metrics and artifacts "
     "automatically to the Lightning Experiments platform.", "an advertisement, printed by every run"),
    ("Loading `train_dataloader` to estimate number of stepping batches.",
     "schedules are sized from the run's length; the loader is cheap here"),
    # (Lightning 2.6 ends these with two full stops)
    *((f"`Trainer({name}=1.0)` was configured so {what}..", "the default value, set by a config")
      for name, what in (("limit_train_batches", "100% of the batches per epoch will be used"),
                         ("limit_val_batches", "100% of the batches will be used"),
                         ("limit_test_batches", "100% of the batches will be used"),
                         ("limit_predict_batches", "100% of the batches will be used"),
                         ("val_check_interval", "validation will run at the end of the training epoch"))),
)

_PLACEHOLDERS = {"{n}": r"\d+", "{path}": r".+", "{any}": r".+"}


def _pattern(text: str) -> str:
    pattern = re.escape(text)
    for placeholder, regex in _PLACEHOLDERS.items():
        pattern = pattern.replace(re.escape(placeholder), regex)
    return pattern


class _DropKnownLines(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.patterns = [re.compile(_pattern(text) + r"\Z") for text, _ in KNOWN_LOG_LINES]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(p.match(message) for p in self.patterns)


_FILTER = _DropKnownLines()


def _one_line(message, category, filename, lineno, line=None) -> str:
    return f"{category.__name__}: {message}\n"


def silence_known_noise() -> None:
    """Install the filters (idempotent) and the one-line warning format."""
    for text, _ in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=_pattern(text) + r"\Z")
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    warnings.formatwarning = _one_line
