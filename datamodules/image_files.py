"""Image files from a folder as one uint8 batch shaped like a data set's own images (for ``predict``)."""

from __future__ import annotations

import io
from pathlib import Path

import torch
from lightning.pytorch.utilities import rank_zero_warn
from PIL import Image, UnidentifiedImageError
from torchvision.transforms.v2 import functional as TF

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def load_image(source: str | Path | bytes, shape: tuple[int, int, int]) -> torch.Tensor:
    """An image file (or its bytes) as uint8 ``(C, H, W)`` with ``shape``'s channels (grey or RGB) and size.

    PIL, as torchvision's own data sets read images; resizing is bilinear and antialiased.
    ValueError when it is not an image.
    """
    channels, height, width = shape
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            image = image.convert("L" if channels == 1 else "RGB")
            if image.size != (width, height):
                image = image.resize((width, height), Image.Resampling.BILINEAR)
            return TF.pil_to_tensor(image)
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"not an image PIL can read ({type(err).__name__})") from None


def read_image_folder(folder: str | Path, shape: tuple[int, int, int]) -> tuple[torch.Tensor, list[str]]:
    """``(uint8 images (N, C, H, W), file names)`` of the PNG/JPEG files in ``folder``, sorted by name.

    Each image is converted to the data set's channels (grey or RGB) and resized to its raw
    ``(H, W)`` (antialiased), so the batch goes through evaluation's own preprocessing after this.
    Other files are named in one warning and skipped; a folder without images is an error.
    """
    path = Path(folder)
    if not path.is_dir():
        raise FileNotFoundError(f"--data.predict_dir {path}: no such folder; pass a folder of PNG/JPEG images")
    images, names, skipped = [], [], []
    for file in sorted(p for p in path.iterdir() if p.is_file()):
        if file.suffix.lower() not in IMAGE_SUFFIXES:
            skipped.append(file.name)
            continue
        try:
            images.append(load_image(file, shape))
        except ValueError:
            skipped.append(file.name)
            continue
        names.append(file.name)
    if skipped:
        shown = ", ".join(skipped[:10]) + (f" and {len(skipped) - 10} more" if len(skipped) > 10 else "")
        rank_zero_warn(f"--data.predict_dir {path}: skipped {len(skipped)} file(s) that are not PNG/JPEG images: "
                       f"{shown}")
    if not images:
        raise ValueError(f"--data.predict_dir {path} holds no PNG/JPEG images; pass a folder with .png or .jpg files")
    return torch.stack(images), names
