"""Learnable synthetic data sets written in torchvision's exact on-disk formats.

For offline smoke tests and benchmarks: the data modules read them like the real files (CIFAR-10
with ``verify_integrity: false``, since the md5 sums are those of the real files).
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np


def class_pattern_images(labels: np.ndarray, size: int, channels: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 images (N, size, size, channels) whose content encodes the class, plus noise.

    Grey (MNIST-like): a bright square at one of ten places on a 4x3 grid. Colour (CIFAR-like): a
    horizontally centred square in the top or bottom half, in one of five colours, so the class
    survives the crop (+-4 px) and horizontal flip of the training augmentation.
    """
    n = len(labels)
    images = rng.integers(0, 60, size=(n, size, size, channels), dtype=np.int64)
    block = size // 4 if channels == 3 else size // 5
    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [0, 255, 255]])
    for i, label in enumerate(labels):
        label = int(label)
        if channels == 3:
            half, colour = divmod(label, 5)
            top = (size // 4 if half == 0 else 3 * size // 4) - block // 2 + rng.integers(-1, 2)
            left = size // 2 - block // 2 + rng.integers(-1, 2)
            images[i, top : top + block, left : left + block, :] = colours[colour]
        else:
            row, col = divmod(label, 4)
            top = 1 + row * (size - block - 2) // 2 + rng.integers(-1, 2)
            left = 1 + col * (size - block - 2) // 3 + rng.integers(-1, 2)
            top, left = np.clip(top, 0, size - block), np.clip(left, 0, size - block)
            images[i, top : top + block, left : left + block, :] = 200 + (label * 5) % 55
    return images.astype(np.uint8)


def noisy(labels: np.ndarray, rng: np.random.Generator, rate: float = 0.05) -> np.ndarray:
    """Relabel a few samples at random so that even a perfect net makes some mistakes."""
    labels = labels.copy()
    flip = rng.random(len(labels)) < rate
    labels[flip] = rng.integers(0, 10, int(flip.sum()))
    return labels


def _idx(path: Path, array: np.ndarray) -> None:
    """The IDX (SN3 Pascal Vincent) format: magic 0x0000_08_ndim, big-endian sizes, raw bytes."""
    header = struct.pack(">I", 0x0800 + array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(root: Path, n_train: int = 600, n_test: int = 200, name: str = "MNIST", seed: int = 0) -> Path:
    """``root/<name>/raw/`` with the four uncompressed IDX files torchvision reads."""
    rng = np.random.default_rng(seed)
    raw = Path(root) / name / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        rng.shuffle(labels)
        images = class_pattern_images(labels, 28, 1, rng)[..., 0]
        labels = noisy(labels, rng)
        _idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _idx(raw / f"{prefix}-labels-idx1-ubyte", labels.astype(np.uint8))
    return raw


CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar10(root: Path, per_batch: int = 100, n_test: int = 200, seed: int = 0) -> Path:
    """``root/cifar-10-batches-py/`` with data_batch_1..5, test_batch and batches.meta as pickles."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = n_test if name == "test_batch" else per_batch
        labels = np.arange(n) % 10
        rng.shuffle(labels)
        images = class_pattern_images(labels, 32, 3, rng)  # N, H, W, C
        labels = noisy(labels, rng)
        entry = {
            # the real files are Python 2 pickles: str keys, which torchvision reads with latin1
            "batch_label": name,
            "labels": labels.tolist(),
            "data": images.transpose(0, 3, 1, 2).reshape(n, 3072),  # CIFAR rows: R plane, G, B
            "filenames": [f"{name}_{i}.png" for i in range(n)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f, protocol=2)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CIFAR_CLASSES, "num_cases_per_batch": per_batch, "num_vis": 3072}, f,
                    protocol=2)
    return folder
