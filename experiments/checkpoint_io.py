"""Checkpoint files written atomically: a crash or a full disk never leaves a half-written checkpoint.

Lightning's ``TorchCheckpointIO`` writes local files through an fsspec transaction whose temporary
file lives in the system temp folder; when that is another file system, the final move is a copy,
and a kill during the copy leaves a truncated checkpoint. Here the temporary file sits next to
the target and ``os.replace`` swaps it in, which is atomic on POSIX and Windows.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if "://" in str(path) and not str(path).startswith("file://"):  # remote storage: Lightning's own way
            return super().save_checkpoint(checkpoint, path, storage_options)
        target = Path(str(path).removeprefix("file://"))
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(temporary, "wb") as f:
                f.write(buffer.getbuffer())
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, target)
        except OSError as err:
            temporary.unlink(missing_ok=True)
            raise OSError(
                err.errno,
                f"could not write checkpoint {target} ({err.strerror or err}); free some space or set "
                "--trainer.default_root_dir elsewhere; the earlier checkpoints are intact",
            ) from None

    def remove_checkpoint(self, path: Any) -> None:
        fs = get_filesystem(path)
        if fs.exists(path):
            fs.rm(path, recursive=True)
