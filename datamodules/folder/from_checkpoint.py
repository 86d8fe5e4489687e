"""The data a checkpoint describes, standing in for the data it was trained on: a model moves to a machine
without that data and still predicts, exports and serves.

Every checkpoint carries its inference description (``lit_models.inference.Inference.record``: class names,
the stored image size, the resize rule, mean/std, crop, padding, the output kind). This data module reads only
that: ``predict --data.predict_dir`` decodes a folder exactly as training stored its images, evaluation's
preprocessing is rebuilt from the recorded numbers, and ``export`` checks parity on the folder's images (or on
seeded random inputs of the recorded shape when no folder is given). It has no training, validation or test
split: commands that need one say to pass the config and its data.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from typing_extensions import override

from datamodules.base.image_classification import ImageClassificationDataModule
from datamodules.folder.predict_dir import read_predict_dir
from datamodules.images.preparation import ImagePreprocess

#: what ``export`` checks parity on when no ``predict_dir`` is given: this many random inputs, from this seed
EXAMPLE_INPUTS, EXAMPLE_SEED = 64, 0


class CheckpointData(ImageClassificationDataModule):
    """The data as a checkpoint describes it (see the module's text).

    Args:
        description: the checkpoint's ``inference`` entry (filled in from ``--ckpt_path``).
        predict_dir: predict the images below this folder (class sub-folders named like the classes give targets).
        batch_size: samples per batch (only predict runs here).
        eval_batch_size: samples per predict batch (default: batch_size).
        decode_workers: processes that decode the folder's files.
    """

    def __init__(self, description: dict[str, Any], predict_dir: str | None = None, batch_size: int = 64,
                 eval_batch_size: int | None = 256, decode_workers: int = 2) -> None:
        super().__init__(data_dir=".", download=False, batch_size=batch_size, eval_batch_size=eval_batch_size,
                         pad=int((description.get("preprocessing") or {}).get("pad") or 0),
                         data_on_device=False, predict_dir=predict_dir)
        self.description = description
        inputs, prep = description.get("input") or {}, description.get("preprocessing") or {}
        self.input_kind = inputs.get("kind", "image")
        self.input_shape = tuple(int(n) for n in (inputs.get("shape") or ["N", 1])[1:])
        names = description.get("class_names") or description.get("labels") or []
        self.class_names = [str(n) for n in names]
        self.mean: Sequence[float] = tuple(prep.get("mean") or (0.0,))
        self.std: Sequence[float] = tuple(prep.get("std") or (1.0,))
        self.crop = prep.get("center_crop")
        self.size = prep.get("resize_to")
        self.resize_rule = str(prep.get("resize_rule") or "stretch")
        self.decode_workers = max(0, decode_workers)
        self._predict_targets: torch.Tensor | None = None

    # -- what the task, predict, export and serve ask -------------------------------------------

    @property
    @override
    def raw_image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the images as the training data stored them."""
        c, h, w = self.input_shape
        return c, h, w

    @property
    @override
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) the net receives: the stored image cropped, padded or resized as evaluation does."""
        c, h, w = self.raw_image_shape
        if self.crop:
            h, w = min(h, self.crop), min(w, self.crop)
        h, w = h + 2 * self.pad, w + 2 * self.pad
        return (c, self.size, self.size) if self.size else (c, h, w)

    @property
    @override
    def resize_to(self) -> int | None:
        return self.size

    @override
    def preprocessor(self) -> ImagePreprocess:
        """Evaluation's preprocessing as recorded: crop, scale, pad, normalise, resize."""
        return ImagePreprocess(self.mean, self.std, self.pad, self.size, crop=self.crop)

    # -- splits: none but predict ---------------------------------------------------------------

    @override
    def prepare_data(self) -> None:
        """Nothing to fetch: the checkpoint holds all there is."""

    @override
    def setup(self, stage: str) -> None:
        if stage != "predict":
            raise ValueError(f"{stage} needs the data the model was trained on; this checkpoint alone carries only "
                             "what inference needs: pass -c CONFIG with its data")

    @override
    def predict_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The images below ``predict_dir`` with their targets, or seeded random inputs of the recorded shape."""
        if self.predict_dir is not None:
            if self._predict_files is None:
                if self.input_kind != "image":
                    raise ValueError(f"--data.predict_dir {self.predict_dir}: this model takes numbers, not images")
                images, names, self._predict_targets = read_predict_dir(
                    self.predict_dir, self.raw_image_shape, self.class_names, self.decode_workers, self.resize_rule)
                self._predict_files = (images, names)
            return self._predict_files[0], self._predict_targets
        generator = torch.Generator().manual_seed(EXAMPLE_SEED)
        if self.input_kind == "image":
            inputs = torch.randint(0, 256, (EXAMPLE_INPUTS, *self.input_shape), generator=generator, dtype=torch.uint8)
        else:
            inputs = torch.randn((EXAMPLE_INPUTS, *self.input_shape), generator=generator)
        return inputs, torch.full((EXAMPLE_INPUTS,), -1, dtype=torch.int64)

    @override
    def predict_dataloader(self) -> Any:
        """Batches of ``predict_dir``'s images (a checkpoint alone has no split to predict)."""
        if self.predict_dir is None:
            raise ValueError("predict from a checkpoint alone needs --data.predict_dir DIR (the images to predict); "
                             "a split of the training data needs -c CONFIG with that data")
        return super().predict_dataloader()

    @property
    @override
    def predict_source(self) -> str:
        return Path(self.predict_dir).resolve().name if self.predict_dir else "random_inputs"
