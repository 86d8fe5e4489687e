"""One home for image preparation: change a rule there (or on the data module) and every path follows."""

from __future__ import annotations

import inspect
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules import ImageFolderDataModule
from datamodules.images import preparation
from datamodules.images.augment import resized_crop_flip_normalize
from datamodules.images.preparation import ImagePreprocess, center_crop, fit_to
from experiments.deploy.serve import decode_image_bytes
from lit_models import ImageClassifier
from lit_models.nets import CifarCNN

WIDE = (60, 30)  # width, height: "crop" keeps the middle half, "stretch" squeezes the whole picture


def wide_picture() -> Image.Image:
    """Four vertical bands of colour: the two rules give clearly different squares."""
    pixels = np.zeros((WIDE[1], WIDE[0], 3), np.uint8)
    for band, colour in enumerate([(250, 0, 0), (0, 250, 0), (0, 0, 250), (250, 250, 0)]):
        pixels[:, band * WIDE[0] // 4:(band + 1) * WIDE[0] // 4] = colour
    return Image.fromarray(pixels)


def write_folder(root: Path) -> Path:
    for name in ("ant", "bee"):
        (root / name).mkdir(parents=True)
        for i in range(3):
            wide_picture().save(root / name / f"{i}.png")
    return root


class Stretching(ImageFolderDataModule):
    """The folder module with the other resize rule: nothing else changed."""

    resize_rule = "stretch"


def expected(rule: str, side: int) -> torch.Tensor:
    image = torch.from_numpy(np.array(wide_picture())).permute(2, 0, 1).contiguous()
    return fit_to(image, side, side, rule)


@pytest.mark.parametrize("storage", ["memory", "stream"])
def test_changing_the_resize_rule_moves_decoding_predict_and_serve(tmp_path, storage):
    if storage == "stream":
        pytest.importorskip("litdata")
    root = write_folder(tmp_path / "photos")
    (tmp_path / "new").mkdir()
    wide_picture().save(tmp_path / "new" / "one.png")
    data = Stretching(str(root), image_size=16, storage_size=20, val_size=0.34, decode_workers=0, storage=storage,
                      cache_dir=str(tmp_path / "cache"), predict_dir=str(tmp_path / "new"), data_on_device=False)
    data.prepare_data()
    data.setup("fit")
    stretched, cropped = expected("stretch", 20), expected("crop", 20)
    assert not torch.equal(stretched, cropped)  # the test can tell the rules apart

    images = torch.cat([batch[0] for batch in data.val_dataloader()])  # decoding: the cache or the stream
    assert len(images) == 2 and all(torch.equal(image, stretched) for image in images)
    assert torch.equal(data.predict_tensors()[0][0], stretched)  # predict --data.predict_dir

    spec = ImageClassifier(net=CifarCNN(num_classes=2, widths=[4, 4, 4]), figure_every_n_epochs=0).inference(data)
    assert spec.preprocessing["resize_rule"] == "stretch"  # recorded for export and serve
    encoded = io.BytesIO()
    wide_picture().save(encoded, format="PNG")
    served = decode_image_bytes(encoded.getvalue(), list(spec.input_shape), rule=spec.preprocessing["resize_rule"])
    assert torch.equal(served[0], stretched)

    default = ImageFolderDataModule(str(root), image_size=16, storage_size=20, val_size=0.34, decode_workers=0,
                                    storage=storage, cache_dir=str(tmp_path / "cache"), data_on_device=False)
    default.prepare_data()
    default.setup("fit")
    assert all(torch.equal(image, cropped) for image in torch.cat([b[0] for b in default.val_dataloader()]))


def test_one_centre_crop_and_one_normalisation_for_evaluation_and_training(monkeypatch):
    x = torch.randint(0, 256, (4, 3, 20, 20), dtype=torch.uint8)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    evaluated = ImagePreprocess(mean, std, crop=16)(x)
    by_hand = (center_crop(x, 16).float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(
        1, 3, 1, 1)
    assert torch.allclose(evaluated, by_hand, atol=1e-6)

    calls = []
    original = preparation.normalize_

    def counting(t, m, s):
        calls.append(t.shape)
        return original(t, m, s)

    import datamodules.images.augment as augment
    monkeypatch.setattr(preparation, "normalize_", counting)
    monkeypatch.setattr(augment, "normalize_", counting)
    ImagePreprocess(mean, std, crop=16)(x)
    resized_crop_flip_normalize(x, 16, torch.tensor(mean) * 255, torch.tensor(std) * 255)
    assert len(calls) == 1 + 4  # evaluation once per batch, training once per image: both through the one home


def test_the_constants_have_one_home():
    from datamodules.bundled.cifar10 import NORMALIZATIONS
    from datamodules.folder import module
    from datamodules.images import files
    from experiments.cli.trainer import ExperimentTrainer

    assert NORMALIZATIONS["imagenet"] == (preparation.IMAGENET_MEAN, preparation.IMAGENET_STD)
    folder_options = inspect.signature(module.ImageFolderDataModule.__init__).parameters
    assert folder_options["mean"].default is preparation.IMAGENET_MEAN
    assert folder_options["std"].default is preparation.IMAGENET_STD
    assert files.DEFAULT_MAX_PIXELS is preparation.DEFAULT_MAX_PIXELS
    assert inspect.signature(ExperimentTrainer.serve).parameters["max_image_pixels"].default == \
        preparation.DEFAULT_MAX_PIXELS
    assert ImageFolderDataModule("x", image_size=224).storage_size == preparation.storage_side(224) == 256
