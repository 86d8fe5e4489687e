"""Checkpoint files written atomically: a crash or a full disk never leaves a half-written checkpoint.

Lightning's ``TorchCheckpointIO`` writes local files through an fsspec transaction whose temporary
file lives in the system temp folder; when that is another file system, the final move is a copy,
and a kill during the copy leaves a truncated checkpoint. Here the file is written next to the
target, forced to disk and renamed over it (:func:`experiments.files.write_atomically`).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO
from typing_extensions import override

from experiments.files import write_atomically


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, writing a local file whole or not at all (a temporary file, then a rename)."""

    @override
    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if "://" in str(path) and not str(path).startswith("file://"):  # remote storage: Lightning's own way
            return super().save_checkpoint(checkpoint, path, storage_options)
        target = Path(str(path).removeprefix("file://"))
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(target, buffer.getbuffer(), fsync=True)
        except OSError as err:
            reason = os.strerror(err.errno) if err.errno else str(err)
            raise OSError(
                err.errno,
                f"could not write checkpoint {target} ({reason}); free some space or set "
                "--trainer.default_root_dir elsewhere; the earlier checkpoints are intact",
            ) from None

    @override
    def remove_checkpoint(self, path: Any) -> None:
        fs = get_filesystem(path)
        if fs.exists(path):
            fs.rm(path, recursive=True)
