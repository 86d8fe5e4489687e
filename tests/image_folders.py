"""Folders of photos the tests write: class folders with uneven counts, nested files, and every kind of file a
real folder holds (JPEG, PNG, WebP, grey, RGBA, CMYK, EXIF-rotated, truncated, zero bytes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

#: the colour channel that tells each class apart (a net learns it in a few steps)
CLASSES = ("ant", "bee", "cat")


def class_image(label: int, size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    w, h = size
    pixels = rng.integers(0, 60, (h, w, 3)).astype(np.uint8)
    pixels[..., label % 3] += 180
    return Image.fromarray(pixels)


def write_image_folder(root: Path, per_class: tuple[int, ...] = (12, 8, 5), size: tuple[int, int] = (40, 30),
                       seed: int = 0) -> Path:
    """``root/<class>/...`` with ``per_class[i]`` images of class i; every third one nested in a sub-folder,
    suffixes cycling through PNG, JPEG and WebP, sizes varying around ``size``.
    """
    rng = np.random.default_rng(seed)
    for label, count in enumerate(per_class):
        for i in range(count):
            folder = root / CLASSES[label] / ("nested/deeper" if i % 3 == 0 else "")
            folder.mkdir(parents=True, exist_ok=True)
            w, h = size[0] + int(rng.integers(-5, 6)), size[1] + int(rng.integers(-5, 6))
            class_image(label, (w, h), rng).save(folder / f"{i:03d}.{('png', 'jpg', 'webp')[i % 3]}")
    return root


def write_awkward_files(folder: Path, label: int = 0, size: tuple[int, int] = (40, 30)) -> dict[str, Path]:
    """One file of each kind a real folder holds, in ``folder``: grey, RGBA, CMYK, EXIF-rotated, 16-bit grey,
    a GIF, a truncated JPEG and a zero-byte file. Returns them by kind.
    """
    folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    pixels = np.zeros((h, w, 3), np.uint8)  # smooth, and no two corners alike: a turned picture shows
    pixels[..., label % 3] = 120 + (np.arange(w) * 100 // w)[None, :]
    pixels[: h // 3, : w // 3] = (250, 250, 250)
    base = Image.fromarray(pixels)
    files = {kind: folder / name for kind, name in {
        "grey": "grey.png", "rgba": "rgba.png", "cmyk": "cmyk.jpg", "exif": "exif.jpg", "grey16": "grey16.png",
        "gif": "anim.gif", "truncated": "truncated.jpg", "empty": "empty.jpg"}.items()}
    base.convert("L").save(files["grey"])
    base.convert("RGBA").save(files["rgba"])
    base.convert("CMYK").save(files["cmyk"])
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to view
    base.transpose(Image.Transpose.ROTATE_90).save(files["exif"], exif=exif)
    Image.fromarray(np.asarray(base.convert("L"), dtype=np.uint16) * 257).save(files["grey16"])
    base.save(files["gif"])
    base.save(folder / "whole.jpg")
    files["truncated"].write_bytes((folder / "whole.jpg").read_bytes()[:150])
    (folder / "whole.jpg").unlink()
    files["empty"].write_bytes(b"")
    return files
