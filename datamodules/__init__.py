"""Lightning data modules. They know nothing of nets: they serve batches and describe the data."""

from datamodules.mnist import MNISTDataModule
from datamodules.sin import SinDataModule

__all__ = ["MNISTDataModule", "SinDataModule"]
