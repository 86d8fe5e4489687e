"""Lightning data modules. They know nothing of nets: they serve batches and describe the data.

Rooms: ``base`` (what every data module stands on), ``images`` (how an image is read and prepared),
``bundled`` (the recipes' data sets) and ``folder`` (your own images).

The names below are imported when first used (PEP 562): a process that needs only image reading, such as a
serve worker, does not import Lightning through this package.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "CIFAR10DataModule": "datamodules.bundled.cifar10",
    "CheckpointData": "datamodules.folder.from_checkpoint",
    "ImageClassificationDataModule": "datamodules.base.image_classification",
    "ImageFolderDataModule": "datamodules.folder.module",
    "InMemoryDataModule": "datamodules.base.in_memory",
    "MNISTDataModule": "datamodules.bundled.mnist",
    "SinDataModule": "datamodules.bundled.sin",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    """The data module class ``name``, imported from its home on first use."""
    if name in _HOMES:
        value = getattr(importlib.import_module(_HOMES[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'datamodules' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})
