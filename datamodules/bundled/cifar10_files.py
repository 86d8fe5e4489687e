"""The CIFAR-10 python files read as uint8 tensors, by the format the data set's authors publish.

The files are Python pickles (https://www.cs.toronto.edu/~kriz/cifar.html): each batch holds ``data``,
a ``N x 3072`` uint8 array whose rows are the red, green and blue 32x32 planes, and ``labels``. Reading
them here instead of through ``torchvision.datasets.CIFAR10`` keeps the md5 check optional (for files a
user made) without overriding that class's private methods, and yields the ``(N, C, H, W)`` layout the
device pipeline wants with no transpose back from torchvision's ``(N, H, W, C)``.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from torchvision import datasets

FOLDER = datasets.CIFAR10.base_folder  # "cifar-10-batches-py"
TRAIN_FILES = [name for name, _ in datasets.CIFAR10.train_list]
TEST_FILES = [name for name, _ in datasets.CIFAR10.test_list]
META_FILE = datasets.CIFAR10.meta["filename"]
MD5 = {name: md5 for name, md5 in datasets.CIFAR10.train_list + datasets.CIFAR10.test_list} | {
    META_FILE: datasets.CIFAR10.meta["md5"]}


def _unpickle(path: Path) -> dict:
    # the real files are Python 2 pickles; latin1 is how torchvision and the authors' own snippet read them
    with open(path, "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    if not isinstance(entry, dict):
        raise ValueError(f"{path} holds a {type(entry).__name__}, not a CIFAR batch")
    return entry


def read_split(folder: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The training (five batches) or test images as uint8 ``(N, 3, 32, 32)`` and int64 labels."""
    images, labels = [], []
    for name in TRAIN_FILES if train else TEST_FILES:
        entry = _unpickle(Path(folder) / name)
        data = np.asarray(entry["data"], dtype=np.uint8)
        images.append(data.reshape(-1, 3, 32, 32))
        labels.extend(entry["labels"] if "labels" in entry else entry["fine_labels"])
        if len(labels) != sum(len(x) for x in images):
            raise ValueError(f"{Path(folder) / name} has {len(data)} images but another number of labels")
    return torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.int64)


def read_class_names(folder: Path) -> list[str]:
    """The class names in the order of the labels, from the data set's ``batches.meta``."""
    return list(_unpickle(Path(folder) / META_FILE)["label_names"])
