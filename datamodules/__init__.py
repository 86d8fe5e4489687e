"""Lightning data modules. They know nothing of nets: they serve batches and describe the data.

Rooms: ``base`` (what every data module stands on), ``images`` (how an image is read and prepared),
``bundled`` (the recipes' data sets) and ``folder`` (your own images).
"""

from datamodules.base.image_classification import ImageClassificationDataModule
from datamodules.base.in_memory import InMemoryDataModule
from datamodules.bundled.cifar10 import CIFAR10DataModule
from datamodules.bundled.mnist import MNISTDataModule
from datamodules.bundled.sin import SinDataModule
from datamodules.folder.module import ImageFolderDataModule

__all__ = ["CIFAR10DataModule", "ImageClassificationDataModule", "ImageFolderDataModule", "InMemoryDataModule",
           "MNISTDataModule", "SinDataModule"]
