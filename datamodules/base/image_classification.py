"""Base of the image classification data modules: uint8 images in memory, normalised on the device."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch.utilities import rank_zero_warn
from typing_extensions import override

from datamodules.base.in_memory import InMemoryDataModule
from datamodules.base.ranks import gather_from_ranks
from datamodules.images.files import read_image_folder
from datamodules.images.preparation import ImagePreprocess


class ImageClassificationDataModule(InMemoryDataModule):
    """Serves ``(uint8 images, int64 labels)`` and turns them into normalised floats on the device.

    Keeping uint8 until after the transfer moves a quarter of the bytes of float32 and does the
    arithmetic where it is fast. Subclasses set ``mean``/``std`` (per channel, in [0, 1] units),
    ``class_names`` and fill the splits with images shaped (N, C, H, W) or (N, H, W).

    ``predict_dir`` makes ``predict`` run on the image files of a folder instead of a split: they
    are converted to the data set's channels and raw size, then prepared exactly as evaluation
    prepares its batches (:meth:`preprocessor`).
    """

    #: how a file of another size becomes the data set's (``datamodules.images.preparation.RESIZE_RULES``): read by
    #: ``predict_dir`` and recorded in checkpoints for ``export`` and ``serve``
    resize_rule = "stretch"
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
        predict_split: Literal["train", "val", "test"] = "test",
        predict_dir: str | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size, eval_batch_size=eval_batch_size, seed=seed,
                         data_on_device=data_on_device, predict_split=predict_split)
        if pad < 0:
            raise ValueError(f"--data.pad must be >= 0, got {pad}")
        self.data_dir = data_dir
        self.download = download
        self.pad = pad
        self.predict_dir = predict_dir
        self._predict_files: tuple[torch.Tensor, list[str]] | None = None
        self._generator: torch.Generator | None = None
        self._generator_state: torch.Tensor | None = None

    # -- what the task and the figures need to know ---------------------------------------------

    @property
    def num_classes(self) -> int:
        """How many classes the labels name."""
        return len(self.class_names)

    @property
    def raw_image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the images as stored, before preparation; each data set says its own."""
        raise NotImplementedError

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the images the net receives, after padding."""
        c, h, w = self.raw_image_shape
        return c, h + 2 * self.pad, w + 2 * self.pad

    @property
    def resize_to(self) -> int | None:
        """Side the evaluation images are resized to after normalising (None: kept as they are)."""
        return None

    def preprocessor(self) -> ImagePreprocess:
        """A new module doing evaluation's preprocessing of raw uint8 images (for export and serving)."""
        return ImagePreprocess(self.mean, self.std, self.pad, self.resize_to)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images back to [0, 1] for display."""
        prep = self._preprocess_on(x.device)
        return (x.float() * prep.std + prep.mean).clamp(0, 1)

    def _preprocess_on(self, device: torch.device) -> ImagePreprocess:
        """The preprocessing module on ``device``, made once per device: a fresh small tensor per batch
        would be a host-to-device copy per step.
        """
        cache = self.__dict__.setdefault("_preprocess_cache", {})
        key = (str(device), tuple(self.mean), tuple(self.std), self.pad, self.resize_to)
        if key not in cache:
            cache[key] = self.preprocessor().to(device)
        return cache[key]

    # -- on the device --------------------------------------------------------------------------

    @override
    def on_after_batch_transfer(self, batch: tuple[torch.Tensor, ...], dataloader_idx: int) -> tuple:
        x, *rest = batch  # (images, labels) or, for predict, (images, labels, indices)
        if x.dtype == torch.uint8:
            x = self.to_float(x, train=self.trainer is not None and self.trainer.training)
        return (x, *rest)

    def to_float(self, x: torch.Tensor, train: bool) -> torch.Tensor:
        """uint8 (N, [C,] H, W) -> normalised float (N, C, H', W'), augmented first when training."""
        if train:
            x = self.augment_uint8(x)
        return self._preprocess_on(x.device)(x)

    def augment_uint8(self, x: torch.Tensor) -> torch.Tensor:
        """Training augmentation on the uint8 batch (none here; subclasses add theirs)."""
        return x

    # -- the augmentation's random stream -------------------------------------------------------

    def _device_generator(self, device: torch.device) -> torch.Generator:
        """One generator for the augmentation draws, seeded per rank, saved per rank in checkpoints.

        Its own stream (not torch's global one) on the device where the batch is, so augmentation
        costs no host round trip and a resumed run draws exactly the crops it would have drawn.
        """
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device)
            self._generator.manual_seed(self.shuffle_seed * 1000 + self._rank())
            if self._generator_state is not None:
                try:
                    self._generator.set_state(self._generator_state)
                except RuntimeError:  # saved on another kind of device: its stream cannot continue here
                    rank_zero_warn("the augmentation generator was saved on another device type; it starts afresh")
                self._generator_state = None
        return self._generator

    def _rank(self) -> int:
        return self.trainer.global_rank if self.trainer is not None else 0

    @override
    def state_dict(self) -> dict[str, Any]:
        # every rank draws its own augmentation: gather them all (rank zero writes the checkpoint)
        state = None if self._generator is None else self._generator.get_state()
        states = gather_from_ranks(state, self.trainer.strategy if self.trainer is not None else None)
        return {} if all(s is None for s in states) else {"augment_generators": states}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        states = state_dict.get("augment_generators") or []
        rank = self._rank()
        self._generator_state = states[rank] if rank < len(states) else None
        self._generator = None

    # -- predict --------------------------------------------------------------------------------

    @override
    def predict_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.predict_dir is None:
            return super().predict_tensors()
        if self._predict_files is None:
            self._predict_files = read_image_folder(self.predict_dir, self.raw_image_shape, rule=self.resize_rule)
        images = self._predict_files[0]
        return images, torch.full((len(images),), -1, dtype=torch.int64)

    @property
    @override
    def predict_source(self) -> str:
        return Path(self.predict_dir).resolve().name if self.predict_dir else self.predict_split

    @property
    @override
    def predict_names(self) -> list[str] | None:
        if self.predict_dir is None:
            return super().predict_names
        self.predict_tensors()
        return self._predict_files[1]
