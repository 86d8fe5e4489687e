"""Lightning data modules. They know nothing of nets: they serve batches and describe the data."""

from datamodules.cifar10 import CIFAR10DataModule
from datamodules.image_folder import ImageFolderDataModule
from datamodules.mnist import MNISTDataModule
from datamodules.sin import SinDataModule

__all__ = ["CIFAR10DataModule", "ImageFolderDataModule", "MNISTDataModule", "SinDataModule"]
