"""``predict --data.predict_dir``: every image file below a folder, decoded as the training images were stored,
with a target where a sub-folder is named like a class (so a labelled folder is scored as it is predicted).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from lightning.pytorch.utilities import rank_zero_warn

from datamodules.folder.cache import decode
from datamodules.folder.layout import images_below


def read_predict_dir(folder: str | Path, shape: tuple[int, int, int], class_names: Sequence[str], workers: int,
                     rule: str) -> tuple[torch.Tensor, list[str], torch.Tensor]:
    """``(uint8 images (N, C, H, W), relative file names, targets)`` of the images below ``folder``.

    Each file is converted to ``shape`` by ``rule`` (:func:`datamodules.images.preparation.fit_to`); a file in a
    sub-folder named like one of ``class_names`` gets that class as its target, any other -1. Files that do not
    decode are named in one warning and skipped.

    Raises:
        FileNotFoundError: ``folder`` is not a folder.
        ValueError: it holds no readable image.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"--data.predict_dir {folder}: no such folder; pass a folder of images")
    files = list(images_below(folder))
    images, facts = decode(files, shape, workers, rule)
    kept = [i for i, (reason, _, _) in enumerate(facts) if not reason]
    skipped = [f"{files[i].relative_to(folder)} ({reason})" for i, (reason, _, _) in enumerate(facts) if reason]
    if skipped:
        rank_zero_warn(f"--data.predict_dir {folder}: skipped {len(skipped)} file(s): {', '.join(skipped[:10])}")
    if not kept:
        raise ValueError(f"--data.predict_dir {folder} holds no readable images; pass a folder of image files")
    names = [str(files[i].relative_to(folder)) for i in kept]
    classes = {name: index for index, name in enumerate(class_names)}
    targets = [classes.get(Path(n).parts[0], -1) if len(Path(n).parts) > 1 else -1 for n in names]
    return images, names, torch.tensor(targets, dtype=torch.int64)
