"""MNIST and its same-format siblings (FashionMNIST, KMNIST), held in memory as uint8."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from torchvision import datasets
from typing_extensions import override

from datamodules.base.folds import Pool
from datamodules.base.image_classification import ImageClassificationDataModule
from datamodules.base.splits import resolve_size, stratified_split
from datamodules.bundled.downloads import download_failed
from datamodules.images.augment import crop_flip

#: per-dataset normalisation (mean, std of the training pixels in [0, 1]) and class names
DATASETS: dict[str, tuple[type, float, float, tuple[str, ...]]] = {
    "MNIST": (datasets.MNIST, 0.1307, 0.3081, tuple(str(i) for i in range(10))),
    "FashionMNIST": (datasets.FashionMNIST, 0.2860, 0.3530, (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")),
    "KMNIST": (datasets.KMNIST, 0.1918, 0.3483, ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")),
}


RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


class MNISTDataModule(ImageClassificationDataModule):
    """The 60k/10k MNIST-format data with a stratified train/validation split of the 60k.

    ``val_size`` is a count or a fraction (default 0.2, the recipe's 80/20). The 70k images are
    55 MB as uint8 and stay in memory; normalisation and padding (``pad: 2`` gives LeNet-5 its
    32x32 input) happen batched on the device.

    Args:
        dataset: which MNIST-format data set torchvision reads (MNIST, FashionMNIST, KMNIST).
        data_dir: folder holding (or receiving) torchvision's <dataset>/raw files.
        download: download the files when missing (needs internet).
        batch_size: training batch size.
        eval_batch_size: batch size of validation, test and predict (default: batch_size).
        val_size: validation images taken from the 60k, as a count or a fraction (stratified).
        subset: use only this many of the 60k training images (a fixed stratified draw, the same for every seed;
            the validation split is taken from them); None: all.
        seed: seed of the split, the shuffling and the augmentation.
        pad: black pixels added on each side (2 gives LeNet-5 its 32x32 input).
        translate: training augmentation: random shift of up to this many pixels (0 turns it off).
        horizontal_flip: training augmentation: mirror half of the images (clothes, not digits).
        data_on_device: keep the whole data set on the accelerator (no per-batch copies).
        predict_split: the split predict runs on (train, val or test).
        predict_dir: a folder of images to predict instead of a split.
    """

    def __init__(
        self,
        dataset: Literal["MNIST", "FashionMNIST", "KMNIST"] = "MNIST",
        data_dir: str = "data",
        download: bool = True,
        batch_size: int = 64,
        eval_batch_size: int | None = 1000,
        val_size: int | float = 0.2,
        subset: int | None = None,
        seed: int = 137,
        pad: int = 0,
        translate: int = 0,
        horizontal_flip: bool = False,
        data_on_device: bool = True,
        predict_split: Literal["train", "val", "test"] = "test",
        predict_dir: str | None = None,
    ) -> None:
        super().__init__(data_dir=data_dir, download=download, batch_size=batch_size, eval_batch_size=eval_batch_size,
                         seed=seed, pad=pad, data_on_device=data_on_device, predict_split=predict_split,
                         predict_dir=predict_dir)
        if dataset not in DATASETS:
            raise ValueError(f"--data.dataset {dataset!r} is not one of {sorted(DATASETS)}")
        if translate < 0:
            raise ValueError(f"--data.translate must be >= 0 pixels, got {translate}")
        self.dataset = dataset
        self.translate = translate
        self.horizontal_flip = horizontal_flip
        self.val_size = val_size
        if subset is not None and subset < 2:
            raise ValueError(f"--data.subset must be >= 2 images (or null for all), got {subset}")
        self.subset = subset
        dataset_class, mean, std, names = DATASETS[dataset]
        self.dataset_class = dataset_class
        self.mean, self.std, self.class_names = (mean,), (std,), names

    @property
    @override
    def raw_image_shape(self) -> tuple[int, int, int]:
        return 1, 28, 28

    @override
    def prepare_data(self) -> None:
        raw = self.raw_folder
        if not self.download or all((raw / name).is_file() for name in RAW_FILES):
            return
        try:
            for train in (True, False):
                self.dataset_class(self.data_dir, train=train, download=True)
        except (RuntimeError, OSError) as err:
            raise download_failed(self.dataset, raw, err, "the files") from None

    @override
    def setup(self, stage: str | None = None) -> None:
        if self.train is not None:
            return
        train_set, test_set = self._open(train=True), self._open(train=False)
        rows = self._pool_rows(train_set.targets)
        images, labels = train_set.data[rows], train_set.targets[rows]
        if self.fold is not None:
            parts = self.split_pool(Pool([str(i) for i in rows.tolist()], labels))
        else:
            val_count = resolve_size(self.val_size, len(labels), "--data.val_size")
            parts = stratified_split(labels, val_count, self.seed)
        self.train = (images[parts["train"]], labels[parts["train"]])
        self.val = (images[parts["val"]], labels[parts["val"]])
        self.test = (test_set.data, test_set.targets)

    def _pool_rows(self, labels: torch.Tensor) -> torch.Tensor:
        """The rows of the 60k training images in use: all, or ``subset`` of them (stratified, seed 0)."""
        if self.subset is None or self.subset >= len(labels):
            return torch.arange(len(labels))
        return stratified_split(labels, int(self.subset), seed=0)["val"]

    @override
    def fold_pool(self, group_by: str | None = None) -> Pool:
        """The 60k training images (or ``subset`` of them), named by their index in the training file."""
        self.no_groups(group_by)
        labels = self._open(train=True).targets
        rows = self._pool_rows(labels)
        return Pool([str(i) for i in rows.tolist()], labels[rows])

    def pool_images(self, sources: list[str]) -> torch.Tensor:
        """The raw uint8 images (N, 1, 28, 28) of pool samples named by ``fold_pool`` (indices in the training file)."""
        images = self._open(train=True).data
        return images[torch.tensor([int(s) for s in sources], dtype=torch.long)].unsqueeze(1)

    @override
    def augment_uint8(self, x: torch.Tensor) -> torch.Tensor:
        if not self.translate and not self.horizontal_flip:
            return x
        x = x.unsqueeze(1) if x.dim() == 3 else x
        return crop_flip(x, self.translate, self.horizontal_flip, self._device_generator(x.device))

    @property
    def raw_folder(self) -> Path:
        """The folder torchvision keeps the data set's raw files in."""
        return Path(self.data_dir) / self.dataset / "raw"

    def _open(self, train: bool):
        raw = self.raw_folder
        missing = [name for name in RAW_FILES if not (raw / name).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{self.dataset} not found in {raw} (missing {', '.join(missing)}): pass "
                f"--data.download true (needs internet) or --data.data_dir pointing at a folder "
                f"with {self.dataset}/raw/"
            )
        try:
            dataset = self.dataset_class(self.data_dir, train=train, download=False)
        except Exception as err:  # torchvision's reader fails with bare asserts on a bad file
            prefix = "train" if train else "t10k"
            raise ValueError(
                f"{self.dataset} file {raw}/{prefix}-images-idx3-ubyte or {prefix}-labels-idx1-ubyte "
                f"is truncated or corrupt ({type(err).__name__}: {err}); delete it and run again "
                "with --data.download true"
            ) from None
        if len(dataset.data) != len(dataset.targets) or dataset.data.shape[1:] != (28, 28):
            raise ValueError(
                f"{self.dataset} files in {raw} disagree: {len(dataset.data)} images of shape "
                f"{tuple(dataset.data.shape[1:])} but {len(dataset.targets)} labels; delete them and "
                "run again with --data.download true"
            )
        return dataset
