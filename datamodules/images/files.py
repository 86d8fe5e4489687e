"""Image files read the way every format, bit depth and orientation should be, as uint8 tensors shaped like a
data set's own images (``predict --data.predict_dir`` and ``serve``).
"""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.transforms.v2 import functional as TF

from datamodules.images.preparation import DEFAULT_MAX_PIXELS, fit_to

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")


class ImageTooLarge(ValueError):
    """More pixels than allowed: refused from the header, before anything is decoded."""


def _eight_bit(image: Image.Image) -> Image.Image:
    """16-bit and 32-bit grey scaled to 8 bits (PIL's ``convert("L")`` clips them instead: a 16-bit
    copy of an image would turn almost white).
    """
    array = np.asarray(image)
    if image.mode.startswith("I;16"):
        scaled = (array.astype(np.uint32) + 128) // 257  # 0..65535 -> 0..255, rounded
    elif image.mode == "I":  # 32-bit ints: 16-bit data in practice, 8-bit when it fits
        scaled = array if array.max(initial=0) <= 255 else (np.clip(array, 0, 65535).astype(np.uint32) + 128) // 257
    else:  # "F": floats in 0..1, or already 0..255
        scaled = array * 255.0 if array.max(initial=0.0) <= 1.0 else array
        scaled = np.clip(np.rint(scaled), 0, 255)
    return Image.fromarray(np.asarray(scaled, dtype=np.uint8), mode="L")


def standard_image(image: Image.Image, channels: int) -> Image.Image:
    """An opened image as 8-bit grey (``channels=1``) or RGB, upright.

    EXIF orientation applied (phone photos store it instead of rotating the pixels); 16/32-bit grey
    scaled, not clipped; palette, CMYK, grey+alpha and RGBA converted as torchvision's folder readers do
    (``convert("RGB")``: transparency dropped).
    """
    image = ImageOps.exif_transpose(image) or image
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        image = _eight_bit(image)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # PIL warns when a palette with transparency goes straight to RGB
    return image.convert("L" if channels == 1 else "RGB")


def load_image(source: str | Path | bytes, shape: tuple[int, int, int],
               max_pixels: int = DEFAULT_MAX_PIXELS, rule: str = "stretch") -> torch.Tensor:
    """An image file (or its bytes) as contiguous uint8 ``(C, H, W)`` with ``shape``'s channels (grey or RGB) and
    size.

    PIL, as torchvision's own data sets read images (see :func:`standard_image`); resizing is bilinear
    and antialiased, by ``rule`` (:data:`~datamodules.images.preparation.RESIZE_RULES`). ``ImageTooLarge`` when
    the header says more than ``max_pixels`` (nothing decoded), ValueError when it is not an image PIL can read
    or it is truncated.
    """
    return read_image(source, shape, max_pixels, rule)[0].contiguous()


def read_image(source: str | Path | bytes, shape: tuple[int, int, int], max_pixels: int = DEFAULT_MAX_PIXELS,
               rule: str = "stretch") -> tuple[torch.Tensor, tuple[int, int]]:
    """:func:`load_image`'s image as the resize left it (a ``(C, H, W)`` view, channels last in memory: the
    folder cache's own layout, copied there without a transpose), and the file's original ``(width, height)``.
    """
    channels, height, width = shape
    try:
        with warnings.catch_warnings():  # PIL's bomb warning: the limit below is the one that applies
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        with opened:
            w, h = opened.size
            if w * h > max_pixels:
                raise ImageTooLarge(f"{w}x{h} is {w * h / 1e6:.0f} megapixels, over the limit of "
                                    f"{max_pixels / 1e6:g} megapixels")
            opened.seek(0)  # the first frame of an animation
            if opened.format == "JPEG" and opened.mode in ("RGB", "L"):
                # libjpeg decodes at 1/2, 1/4 or 1/8 scale directly, never below the size asked for: a photo
                # far larger than the target decodes several times faster (both sides asked: EXIF may turn it)
                side = max(height, width)
                opened.draft(opened.mode, (side, side))
            # pil_to_tensor's (C, H, W) is a view of the (H, W, C) pixels: the layout torch's fast kernel reads
            return fit_to(TF.pil_to_tensor(standard_image(opened, channels)), height, width, rule), (w, h)
    except Image.DecompressionBombError as err:  # PIL's own limit (2x its warning size), checked at open
        found = re.search(r"\((\d+) pixels\)", str(err))
        size = f"{int(found.group(1)) / 1e6:.0f} megapixels" if found else "too many pixels"
        raise ImageTooLarge(f"{size}, over PIL's decompression-bomb limit") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        text = str(err).lower()
        kind = "truncated" if "truncated" in text or "broken data stream" in text else type(err).__name__
        raise ValueError(f"not an image PIL can read ({kind})") from None


def read_image_folder(folder: str | Path, shape: tuple[int, int, int], max_pixels: int = DEFAULT_MAX_PIXELS,
                      rule: str = "stretch") -> tuple[torch.Tensor, list[str]]:
    """``(uint8 images (N, C, H, W), file names)`` of the image files in ``folder``, sorted by name.

    Each image is converted to the data set's channels (grey or RGB) and resized to its raw
    ``(H, W)`` (antialiased), so the batch goes through evaluation's own preprocessing after this.
    Files that are not images, cannot be read or are over ``max_pixels`` are named in one warning with
    the reason and skipped (the others are still predicted); a folder without images is an error.
    """
    path = Path(folder)
    if not path.is_dir():
        raise FileNotFoundError(f"--data.predict_dir {path}: no such folder; pass a folder of images")
    images, names, skipped = [], [], []
    for file in sorted(p for p in path.iterdir() if p.is_file()):
        if file.suffix.lower() not in IMAGE_SUFFIXES:
            skipped.append(f"{file.name} (not an image suffix)")
            continue
        try:
            images.append(load_image(file, shape, max_pixels, rule))
        except ValueError as err:
            skipped.append(f"{file.name} ({err})")
            continue
        names.append(file.name)
    if skipped:
        shown = ", ".join(skipped[:10]) + (f" and {len(skipped) - 10} more" if len(skipped) > 10 else "")
        from lightning.pytorch.utilities import rank_zero_warn  # here: serve's workers read images without Lightning

        rank_zero_warn(f"--data.predict_dir {path}: skipped {len(skipped)} file(s): {shown}")
    if not images:
        raise ValueError(f"--data.predict_dir {path} holds no readable images; pass a folder of image files "
                         f"({', '.join(IMAGE_SUFFIXES)})")
    return torch.stack(images), names
