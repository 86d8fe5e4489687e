"""Image preparation, one home: every path that turns a file or a stored image into the net's input asks here.

Decoding (the folder cache, the LitData stream, ``predict --data.predict_dir``, ``serve``) resizes by
:func:`fit_to` with the data module's :attr:`resize_rule`; training and evaluation crop by :func:`center_crop`
and normalise by :func:`normalize_`; evaluation, ``export`` and ``serve`` put :class:`ImagePreprocess` in front
of the net. The constants that describe a preparation (ImageNet's statistics, the crop fraction, the pixel
limit) live here too, so changing one rule moves every path at once.

Evaluation preprocessing is an ``nn.Module`` with its statistics as buffers: ``export`` and ``serve`` put the
identical arithmetic in front of the net, so a model exported or served sees exactly what evaluation saw.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from typing_extensions import override

#: the statistics torchvision's ImageNet weights were trained with (per channel, in [0, 1] units)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: evaluation's centre crop keeps this fraction of the stored side (torchvision's 224 of 256)
CROP_FRACTION = 0.875
#: the most pixels a file may have before it is refused unread (a 48-megapixel phone photo needs a higher limit)
DEFAULT_MAX_PIXELS = 40_000_000
#: how an image of another size becomes the data set's: ``stretch`` to (H, W) (the 28/32-px data sets'
#: files), or ``crop``: the shorter side to the target's, then the centre (photos: torchvision's Resize +
#: CenterCrop, which keeps the aspect ratio)
RESIZE_RULES = ("stretch", "crop")


def storage_side(image_size: int) -> int:
    """The side a photo is stored at so that evaluation's centre crop of ``image_size`` keeps :data:`CROP_FRACTION`.

    Returns:
        ``round(image_size / CROP_FRACTION)``: 256 for 224, as torchvision's evaluation transforms.
    """
    return round(image_size / CROP_FRACTION)


def center_crop(x: torch.Tensor, height: int, width: int | None = None) -> torch.Tensor:
    """The central ``height`` x ``width`` window of an image or a batch (``(..., H, W)``), as a view.

    A side already at or below the target is kept whole, so the function never pads.
    """
    width = height if width is None else width
    h, w = x.shape[-2:]
    top, left = max(0, (h - height) // 2), max(0, (w - width) // 2)
    return x[..., top:top + height, left:left + width]


def normalize_(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``(x - mean) / std`` in place, with statistics in the units of ``x`` (``[0, 1]`` or ``[0, 255]``).

    Returns:
        ``x`` itself, normalised.
    """
    return x.sub_(mean).div_(std)


def fit_to(image: torch.Tensor, height: int, width: int, rule: str) -> torch.Tensor:
    """uint8 ``image`` (C, h, w) resized (bilinear, antialiased) to ``height`` x ``width`` by ``rule``.

    torch's antialiased uint8 kernel, not PIL's ``resize``: the same filter (pixels within one level of PIL's),
    measured 0.53 ms against PIL's 1.22 ms for a 320x240 photo to 341x256 on a 2-core CPU, and resizing is most
    of what decoding a folder of small photos costs.

    Raises:
        ValueError: ``rule`` is not one of :data:`RESIZE_RULES`.
    """
    if rule not in RESIZE_RULES:
        raise ValueError(f"resize rule {rule!r} is not one of {', '.join(RESIZE_RULES)}")
    h, w = image.shape[-2:]
    if (h, w) == (height, width):
        return image
    if rule == "stretch":
        size = (height, width)
    else:
        scale = max(width / w, height / h)
        size = (max(height, round(h * scale)), max(width, round(w * scale)))
    resized = F.interpolate(image[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
    return center_crop(resized, height, width)


class ImagePreprocess(nn.Module):
    """uint8 ``(N, [C,] H, W)`` -> normalised float ``(N, C, H', W')``: scale, crop, pad, normalise, resize.

    Args:
        mean: per-channel mean in [0, 1] units.
        std: per-channel standard deviation in [0, 1] units.
        pad: black pixels added on each side before normalising (the LeNet recipe's 28 -> 32).
        size: side the normalised image is resized to (None: kept).
        crop: the central window evaluation takes of a stored image (the folder module stores images a
            little larger than the net's input, as torchvision's resize-then-centre-crop evaluation does).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], pad: int = 0, size: int | None = None,
                 crop: int | None = None) -> None:
        super().__init__()
        self.crop = crop
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.pad = pad
        self.size = size

    @override
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Prepare a uint8 batch as evaluation does.

        Returns:
            A new float32 tensor; the input is never written.
        """
        if x.dim() == 3:
            x = x.unsqueeze(1)
        if self.crop:
            x = center_crop(x, self.crop)
        x = x.to(torch.float32) / 255  # a new tensor: the in-place steps below never touch the input
        if self.pad:
            x = F.pad(x, (self.pad,) * 4)  # pad with black before normalising, as the recipes do
        x = normalize_(x, self.mean, self.std)
        if self.size and (x.shape[-2] != self.size or x.shape[-1] != self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=False)
        return x

    @override
    def extra_repr(self) -> str:
        """The statistics and sizes, as ``print(model)`` shows them."""
        mean, std = self.mean.flatten().tolist(), self.std.flatten().tolist()
        return f"mean={mean}, std={std}, pad={self.pad}, size={self.size}, crop={self.crop}"
