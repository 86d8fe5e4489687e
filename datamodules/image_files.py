"""Image files from a folder as one uint8 batch shaped like a data set's own images (for ``predict``)."""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2 import functional as TF

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def read_image_folder(folder: str | Path, shape: tuple[int, int, int]) -> tuple[torch.Tensor, list[str]]:
    """``(uint8 images (N, C, H, W), file names)`` of the PNG/JPEG files in ``folder``, sorted by name.

    Each image is converted to the data set's channels (grey or RGB) and resized to its raw
    ``(H, W)`` (antialiased), so the batch goes through evaluation's own preprocessing after this.
    Other files are named in one warning and skipped; a folder without images is an error.
    """
    path = Path(folder)
    if not path.is_dir():
        raise FileNotFoundError(f"--data.predict_dir {path}: no such folder; pass a folder of PNG/JPEG images")
    channels, height, width = shape
    mode = ImageReadMode.GRAY if channels == 1 else ImageReadMode.RGB
    images, names, skipped = [], [], []
    for file in sorted(p for p in path.iterdir() if p.is_file()):
        if file.suffix.lower() not in IMAGE_SUFFIXES:
            skipped.append(file.name)
            continue
        try:
            image = decode_image(str(file), mode=mode)
        except RuntimeError:
            skipped.append(file.name)
            continue
        if image.shape[-2:] != (height, width):
            image = TF.resize(image, [height, width], antialias=True)
        images.append(image)
        names.append(file.name)
    if skipped:
        shown = ", ".join(skipped[:10]) + (f" and {len(skipped) - 10} more" if len(skipped) > 10 else "")
        rank_zero_warn(f"--data.predict_dir {path}: skipped {len(skipped)} file(s) that are not PNG/JPEG images: "
                       f"{shown}")
    if not images:
        raise ValueError(f"--data.predict_dir {path} holds no PNG/JPEG images; pass a folder with .png or .jpg files")
    return torch.stack(images), names
