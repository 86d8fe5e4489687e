"""Image files as predict and serve read them: every bit depth, mode and orientation gives the pixels the
image shows; a bomb or a broken file is refused by name, never decoded.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules.images.files import ImageTooLarge, load_image, read_image_folder
from tests.image_bombs import huge_png, write_huge_png

GREY = (1, 28, 28)
RGB = (3, 28, 28)


def _grey() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)


def _png(image: Image.Image, **save) -> bytes:
    out = io.BytesIO()
    image.save(out, format=save.pop("format", "PNG"), **save)
    return out.getvalue()


def test_a_16_bit_copy_reads_as_the_8_bit_original():
    pixels = _grey()
    eight = load_image(_png(Image.fromarray(pixels)), GREY)
    sixteen = load_image(_png(Image.fromarray(pixels.astype(np.uint16) * 257)), GREY)
    assert Image.open(io.BytesIO(_png(Image.fromarray(pixels.astype(np.uint16) * 257)))).mode == "I;16"
    assert torch.equal(eight, sixteen) and torch.equal(eight[0], torch.from_numpy(pixels))
    as_int32 = load_image(_png(Image.fromarray(pixels.astype(np.int32) * 257, mode="I"), format="TIFF"), GREY)
    assert torch.equal(as_int32, eight)


def test_palette_rgba_cmyk_and_grey_alpha_give_the_shown_colours():
    rgb = np.random.default_rng(1).integers(0, 256, (28, 28, 3), dtype=np.uint8)
    expected = torch.from_numpy(rgb).permute(2, 0, 1)
    rgba = np.concatenate([rgb, np.full((28, 28, 1), 128, np.uint8)], axis=2)
    assert torch.equal(load_image(_png(Image.fromarray(rgba, mode="RGBA")), RGB), expected)
    cmyk = Image.fromarray(rgb).convert("CMYK")  # PIL's CMYK round-trips RGB exactly
    assert torch.equal(load_image(_png(cmyk, format="TIFF"), RGB), expected)
    palette = Image.fromarray(rgb).quantize(64)
    shown = torch.from_numpy(np.array(palette.convert("RGB"))).permute(2, 0, 1)
    assert torch.equal(load_image(_png(palette), RGB), shown)
    palette.info["transparency"] = 0
    assert load_image(_png(palette, transparency=0), RGB).shape == RGB
    grey_alpha = Image.fromarray(np.stack([_grey(), np.full((28, 28), 9, np.uint8)], axis=2), mode="LA")
    assert torch.equal(load_image(_png(grey_alpha), GREY)[0], torch.from_numpy(_grey()))


def test_exif_orientation_is_applied():
    pixels = np.zeros((20, 28), np.uint8)
    pixels[0, :] = 255  # a white top row
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    loaded = load_image(_png(image, exif=exif), (1, 28, 20))[0]
    assert loaded[:, -1].min() == 255 and loaded[:, 0].max() == 0  # the top row is now the right column


def test_first_frame_of_a_gif():
    frames = [Image.fromarray(np.full((28, 28), v, np.uint8)) for v in (40, 200)]
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:])
    assert load_image(out.getvalue(), GREY).float().mean().item() == pytest.approx(40, abs=2)


def test_bombs_are_refused_from_the_header_and_broken_files_are_named():
    with pytest.raises(ImageTooLarge, match="13000x13000 is 169 megapixels, over the limit of 40 megapixels"):
        load_image(huge_png(13000, 13000), GREY)
    with pytest.raises(ImageTooLarge):  # over PIL's own bomb limit too
        load_image(huge_png(20000, 20000), GREY, max_pixels=10**12)
    assert load_image(huge_png(300, 200), GREY, max_pixels=60_000).shape == GREY  # the limit is the option's
    whole = _png(Image.fromarray(_grey()))
    with pytest.raises(ValueError, match="not an image PIL can read"):
        load_image(whole[: len(whole) // 2], GREY)
    with pytest.raises(ValueError, match="not an image PIL can read"):
        load_image(b"", GREY)


def test_a_folder_skips_what_it_cannot_read_and_keeps_the_rest(tmp_path):
    Image.fromarray(_grey()).save(tmp_path / "good.png")
    write_huge_png(tmp_path / "bomb.png", 20000, 20000)
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.warns(UserWarning, match="skipped 3 file") as caught:
        images, names = read_image_folder(tmp_path, GREY)
    assert names == ["good.png"] and images.shape == (1, *GREY)
    message = str(caught[0].message)
    assert "bomb.png (400 megapixels, over PIL's decompression-bomb limit)" in message
    assert "empty.jpg (not an image" in message and "notes.txt (not an image suffix)" in message
