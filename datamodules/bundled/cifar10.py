"""CIFAR-10 held in memory as uint8, augmented per sample but batched on the device."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import datasets
from torchvision import transforms as T
from typing_extensions import override

from datamodules.base.folds import Pool
from datamodules.base.image_classification import ImageClassificationDataModule
from datamodules.base.splits import random_split, resolve_size
from datamodules.bundled import cifar10_files as files
from datamodules.bundled.downloads import download_failed
from datamodules.images.augment import crop_flip
from datamodules.images.pil_images import PILImages
from datamodules.images.preparation import IMAGENET_MEAN, IMAGENET_STD

NORMALIZATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "recipe": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
}


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


class CIFAR10DataModule(ImageClassificationDataModule):
    """CIFAR-10: the recipe's 45k/5k split (``torch.randperm`` with seed 42) and the 10k test set.

    ``pipeline="device"`` (default): the 60k uint8 images (180 MB) stay in memory (on the GPU with
    ``data_on_device``) and the training augmentation (random crop with ``crop_padding`` + horizontal
    flip) runs on whole batches after the transfer, each image getting its own offsets and flip.
    ``pipeline="torchvision"``: the classic ``DataLoader`` over torchvision's dataset with PIL
    transforms and ``num_workers`` workers; subclass and override ``train_transform`` for your own.

    ``image_size`` resizes on the device after augmentation (e.g. 224 for ImageNet-pretrained
    nets). ``verify_integrity`` checks torchvision's md5 sums of the files; only turn it off for
    files you made yourself.

    Args:
        data_dir: folder holding (or receiving) cifar-10-batches-py/.
        download: download the files when missing (needs internet).
        batch_size: training batch size.
        eval_batch_size: batch size of validation, test and predict (default: batch_size).
        val_size: validation images taken from the 50k, as a count or a fraction.
        seed: seed of the split, the shuffling and the augmentation.
        normalization: per-channel statistics: recipe (0.5), cifar10 or imagenet.
        augment: training augmentation (random crop + horizontal flip).
        crop_padding: pixels of padding for the random crop.
        horizontal_flip: mirror half of the training images.
        image_size: resize to this side after augmentation (224 for ImageNet-pretrained nets).
        pipeline: device (batched augmentation after the transfer) or torchvision (PIL per sample).
        num_workers: DataLoader workers of the torchvision pipeline.
        verify_integrity: check torchvision's md5 sums of the files.
        data_on_device: keep the whole data set on the accelerator (no per-batch copies).
        predict_split: the split predict runs on (train, val or test).
        predict_dir: a folder of images to predict instead of a split.
    """

    def __init__(
        self,
        data_dir: str = "data",
        download: bool = True,
        batch_size: int = 64,
        eval_batch_size: int | None = 1000,
        val_size: int | float = 5000,
        seed: int = 42,
        normalization: Literal["recipe", "cifar10", "imagenet"] = "cifar10",
        augment: bool = True,
        crop_padding: int = 4,
        horizontal_flip: bool = True,
        image_size: int | None = None,
        pipeline: Literal["device", "torchvision"] = "device",
        num_workers: int = 2,
        verify_integrity: bool = True,
        data_on_device: bool = True,
        predict_split: Literal["train", "val", "test"] = "test",
        predict_dir: str | None = None,
    ) -> None:
        super().__init__(data_dir=data_dir, download=download, batch_size=batch_size, eval_batch_size=eval_batch_size,
                         seed=seed, pad=0, data_on_device=data_on_device, predict_split=predict_split,
                         predict_dir=predict_dir)
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"--data.normalization {normalization!r} is not one of {sorted(NORMALIZATIONS)}")
        if crop_padding < 0 or (image_size is not None and image_size < 8) or num_workers < 0:
            raise ValueError("--data.crop_padding and --data.num_workers must be >= 0, --data.image_size >= 8")
        self.val_size = val_size
        self.normalization = normalization
        self.mean, self.std = NORMALIZATIONS[normalization]
        self.augment = augment
        self.crop_padding = crop_padding
        self.horizontal_flip = horizontal_flip
        self.image_size = image_size
        self.pipeline = pipeline
        self.num_workers = num_workers
        self.verify_integrity = verify_integrity
        self.class_names = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
        self._train_idx: torch.Tensor | None = None
        self._val_idx: torch.Tensor | None = None

    @property
    @override
    def raw_image_shape(self) -> tuple[int, int, int]:
        return 3, 32, 32

    @property
    @override
    def image_shape(self) -> tuple[int, int, int]:
        side = self.image_size or 32
        return 3, side, side

    @property
    @override
    def resize_to(self) -> int | None:
        return self.image_size

    @property
    def folder(self) -> Path:
        """The ``cifar-10-batches-py`` folder under ``data_dir``."""
        return Path(self.data_dir) / files.FOLDER

    # -- files ----------------------------------------------------------------------------------

    @override
    def prepare_data(self) -> None:
        if not self.download or self._missing() == []:
            return
        try:
            datasets.CIFAR10(self.data_dir, train=True, download=True)
        except (RuntimeError, OSError) as err:
            raise download_failed("CIFAR-10", self.data_dir, err, "cifar-10-batches-py/") from None

    def _missing(self) -> list[str]:
        names = [*files.TRAIN_FILES, *files.TEST_FILES, files.META_FILE]
        return [name for name in names if not (self.folder / name).is_file()]

    def _check_files(self) -> None:
        missing = self._missing()
        if missing:
            raise FileNotFoundError(
                f"CIFAR-10 not found in {self.folder} (missing {', '.join(missing)}): pass "
                "--data.download true (needs internet) or --data.data_dir pointing at the folder "
                "that holds cifar-10-batches-py/"
            )
        if not self.verify_integrity:
            return
        for name, md5 in files.MD5.items():
            if _md5(self.folder / name) != md5:
                raise ValueError(
                    f"CIFAR-10 file {self.folder / name} is corrupt (md5 differs from torchvision's); "
                    "delete it and run again with --data.download true, or pass --data.verify_integrity false "
                    "if you made these files yourself"
                )

    def _read(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            return files.read_split(self.folder, train)
        except Exception as err:  # a truncated pickle fails deep inside numpy/pickle
            raise ValueError(
                f"CIFAR-10 files in {self.folder} cannot be read ({type(err).__name__}: {err}); delete "
                "them and run again with --data.download true"
            ) from None

    @override
    def fold_pool(self, group_by: str | None = None) -> Pool:
        """The 50k training images, named by their index in the training batches."""
        self.no_groups(group_by)
        self._check_files()
        labels = self._read(train=True)[1]
        return Pool([str(i) for i in range(len(labels))], labels)

    def pil_dataset(self, split: Literal["train", "val", "test"], transform: Any = None) -> Dataset:
        """A split as ``(transform(PIL image), label)`` pairs, as ``torchvision.datasets.CIFAR10`` yields
        them: the classic per-sample DataLoader pipeline (``pipeline="torchvision"``, the recipe loops).
        """
        self.setup()
        images, labels = {"train": self.train, "val": self.val, "test": self.test}[split]
        return PILImages(images, labels, transform)

    @override
    def setup(self, stage: str | None = None) -> None:
        if self._train_idx is not None:
            return
        self._check_files()
        images, labels = self._read(train=True)
        if self.fold is not None:
            parts = self.split_pool(Pool([str(i) for i in range(len(labels))], labels))
            self._train_idx, self._val_idx = parts["train"], parts["val"]
        else:
            val_count = resolve_size(self.val_size, len(labels), "--data.val_size")
            self._train_idx, self._val_idx = random_split(len(labels), val_count, self.seed)
        # the torchvision pipeline trains and evaluates from its DataLoaders over these same tensors;
        # predict, export and serve use the device preprocessing in either case
        self.train = (images[self._train_idx], labels[self._train_idx])
        self.val = (images[self._val_idx], labels[self._val_idx])
        self.test = self._read(train=False)

    # -- the torchvision pipeline ---------------------------------------------------------------

    def train_transform(self) -> T.Compose:
        """The torchvision pipeline's training transform (PIL in, normalised tensor out); override for your own."""
        steps: list[Any] = []
        if self.augment:
            steps += [T.RandomCrop(32, padding=self.crop_padding)]
            if self.horizontal_flip:
                steps += [T.RandomHorizontalFlip()]
        return T.Compose(steps + self.eval_transform().transforms)

    def eval_transform(self) -> T.Compose:
        """The torchvision pipeline's evaluation transform: resize when asked, then normalise."""
        resize = [T.Resize(self.image_size, antialias=True)] if self.image_size else []
        return T.Compose([*resize, T.ToTensor(), T.Normalize(self.mean, self.std)])

    def _loader(self, split: Literal["train", "val", "test"]) -> DataLoader:
        shuffle = split == "train"
        dataset = self.pil_dataset(split, self.train_transform() if shuffle else self.eval_transform())
        return DataLoader(dataset, batch_size=self.batch_size if shuffle else self.eval_batch_size,
                          shuffle=shuffle, num_workers=self.num_workers, pin_memory=torch.cuda.is_available(),
                          persistent_workers=self.num_workers > 0)

    @override
    def train_dataloader(self) -> Any:
        if self.pipeline == "torchvision":
            return self._loader("train")
        return super().train_dataloader()

    @override
    def val_dataloader(self) -> Any:
        if self.pipeline == "torchvision":
            return self._loader("val")
        return super().val_dataloader()

    @override
    def test_dataloader(self) -> Any:
        if self.pipeline == "torchvision":
            return self._loader("test")
        return super().test_dataloader()

    # -- the device pipeline --------------------------------------------------------------------

    @override
    def augment_uint8(self, x: torch.Tensor) -> torch.Tensor:
        if not self.augment:
            return x
        return crop_flip(x, self.crop_padding, self.horizontal_flip, self._device_generator(x.device))

