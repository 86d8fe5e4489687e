"""Where does a training step wait for the GPU?  ``python -m benchmarks.sync_check EXPERIMENT [overrides]``.

Turns on ``torch.cuda.set_sync_debug_mode`` for a few steps after warm-up and prints each
synchronising call site (the innermost frame outside torch), with how often it fired.
"""

from __future__ import annotations

import collections
import sys
import tempfile
import traceback
import warnings
from pathlib import Path

import lightning as L
import torch

from benchmarks import project


class SyncDebug(L.Callback):
    def __init__(self, first: int = 3, last: int = 8) -> None:
        self.first, self.last = first, last
        self.sites: collections.Counter = collections.Counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.first:
            torch.cuda.set_sync_debug_mode("warn")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx == self.last:
            torch.cuda.set_sync_debug_mode(0)
            trainer.should_stop = True


def main(argv: list[str]) -> None:
    experiment, overrides = argv[0], argv[1:]
    probe = SyncDebug()
    original = warnings.showwarning

    def record(message, category, filename, lineno, file=None, line=None):
        if "synchroniz" not in str(message):
            return original(message, category, filename, lineno, file, line)
        frames = [f for f in traceback.extract_stack()[:-1]
                  if "/torch/" not in f.filename and "warnings" not in f.filename]
        site = " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in frames[-3:][::-1])
        probe.sites[site] += 1

    warnings.showwarning = record
    warnings.simplefilter("always")
    project.fit(experiment, ["--trainer.limit_val_batches", "0", "--trainer.max_epochs", "1", *overrides],
                Path(tempfile.mkdtemp()), [probe])
    print(f"synchronising calls in steps {probe.first}..{probe.last} of {experiment}:")
    for site, count in probe.sites.most_common():
        print(f"{count:4d}  {site}")
    if not probe.sites:
        print("   none")


if __name__ == "__main__":
    main(sys.argv[1:])
