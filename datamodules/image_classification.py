"""Base of the image classification data modules: uint8 images in memory, normalised on the device."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from datamodules.in_memory import InMemoryDataModule


class ImageClassificationDataModule(InMemoryDataModule):
    """Serves ``(uint8 images, int64 labels)`` and turns them into normalised floats on the device.

    Keeping uint8 until after the transfer moves a quarter of the bytes of float32 and does the
    arithmetic where it is fast. Subclasses set ``mean``/``std`` (per channel, in [0, 1] units),
    ``class_names`` and fill the splits with images shaped (N, C, H, W) or (N, H, W).
    """

    mean: Sequence[float] = (0.5,)
    std: Sequence[float] = (0.5,)
    class_names: Sequence[str] = ()

    def __init__(
        self,
        data_dir: str = "data",
        download: bool = True,
        batch_size: int = 64,
        eval_batch_size: int | None = 1000,
        seed: int = 137,
        pad: int = 0,
        data_on_device: bool = True,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, seed, data_on_device)
        if pad < 0:
            raise ValueError(f"--data.pad must be >= 0, got {pad}")
        self.data_dir = data_dir
        self.download = download
        self.pad = pad

    # -- what the task and the figures need to know ---------------------------------------------

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def raw_image_shape(self) -> tuple[int, int, int]:
        raise NotImplementedError

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the images the net receives, after padding."""
        c, h, w = self.raw_image_shape
        return c, h + 2 * self.pad, w + 2 * self.pad

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images back to [0, 1] for display."""
        mean, std = self._statistics(x.device)
        return (x.float() * std + mean).clamp(0, 1)

    def _statistics(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) shaped (1, C, 1, 1) on ``device``, made once: a fresh small tensor per batch
        would be a host-to-device copy per step."""
        cache = self.__dict__.setdefault("_statistics_cache", {})
        key = (str(device), tuple(self.mean), tuple(self.std))
        if key not in cache:
            cache[key] = (torch.tensor(self.mean, device=device).view(1, -1, 1, 1),
                          torch.tensor(self.std, device=device).view(1, -1, 1, 1))
        return cache[key]

    # -- on the device --------------------------------------------------------------------------

    def on_after_batch_transfer(self, batch: tuple[torch.Tensor, torch.Tensor], dataloader_idx: int) -> tuple:
        x, y = batch
        if x.dtype == torch.uint8:
            x = self.to_float(x, train=self.trainer is not None and self.trainer.training)
        return x, y

    def to_float(self, x: torch.Tensor, train: bool) -> torch.Tensor:
        """uint8 (N, [C,] H, W) -> normalised float (N, C, H', W'); subclasses add augmentation."""
        if x.dim() == 3:
            x = x.unsqueeze(1)
        x = x.float().div_(255)
        if self.pad:
            x = F.pad(x, (self.pad,) * 4)  # pad with black before normalising, as the recipe does
        mean, std = self._statistics(x.device)
        return x.sub_(mean).div_(std)
