"""A folder of photos decoded once: uint8 images at a storage size, kept in a file keyed by a manifest.

Decoding JPEGs is what makes a folder of photos slow to train on; it is done once here, in parallel
(a ``DataLoader`` over the files), each image made upright and RGB (or grey), its shorter side resized
to ``storage`` and its centre cut square, as torchvision's Resize + CenterCrop evaluation does. The
result is saved as ``<cache_dir>/<storage>px-<channels>c-<key>.pt``, where the key hashes every file's
path, size, modification time, class and split and the options: a second run loads it memory-mapped
without decoding; an added, changed or removed file gives another key and a rebuild. The file is
written under a temporary name and renamed when complete, so a run killed while caching leaves
nothing that a later run would use.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from datamodules.folder_layout import Layout
from datamodules.image_files import DEFAULT_MAX_PIXELS, load_image

CACHE_VERSION = 1


def manifest_key(layout: Layout, storage: int, channels: int) -> str:
    entries = []
    for path, label, split in zip(layout.files, layout.labels, layout.splits, strict=True):
        try:
            stat = path.stat()
            entries.append([str(path), stat.st_size, stat.st_mtime_ns, label, split])
        except OSError:
            entries.append([str(path), None, None, label, split])
    text = json.dumps({"version": CACHE_VERSION, "storage": storage, "channels": channels,
                       "classes": layout.classes, "files": entries})
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class _Decode(torch.utils.data.Dataset):
    """One file -> (image or None, reason, original (w, h), sha1 of the bytes): run in loader workers."""

    def __init__(self, files: list[Path], shape: tuple[int, int, int], max_pixels: int) -> None:
        self.files, self.shape, self.max_pixels = files, shape, max_pixels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[np.ndarray | None, str, tuple[int, int], str]:
        """The image as a numpy array: a tensor would travel back from a worker through a shared-memory file
        descriptor of its own, and tens of thousands of them exhaust the process's open-file limit."""
        path = self.files[index]
        try:
            data = path.read_bytes()
        except OSError as err:
            return None, f"unreadable ({err.strerror or err})", (0, 0), ""
        if not data:
            return None, "zero bytes", (0, 0), ""
        digest = hashlib.sha1(data).hexdigest()
        try:
            with Image.open(io.BytesIO(data)) as opened:
                size = opened.size
            return load_image(data, self.shape, self.max_pixels, rule="crop").numpy(), "", size, digest
        except Exception as err:  # noqa: BLE001 - PIL raises many kinds for a bad file: each is a reason to skip it
            reason = str(err) if isinstance(err, ValueError) else f"{type(err).__name__}: {err}"
            if "truncated" in reason.lower() or "broken data stream" in reason.lower():
                reason = "truncated"
            return None, reason, (0, 0), digest


def _as_list(items: list[Any]) -> list[Any]:
    return items


def decode(files: list[Path], shape: tuple[int, int, int], workers: int, max_pixels: int = DEFAULT_MAX_PIXELS
           ) -> tuple[torch.Tensor, list[tuple[str, tuple[int, int], str]]]:
    """Every file decoded (``workers`` processes; 0: here), in order: ``(images, [(reason, size, sha1)])`` where
    ``images`` holds the files that decoded (reason ""), in order, written into one tensor as they arrive."""
    loader = torch.utils.data.DataLoader(_Decode(files, shape, max_pixels), batch_size=16, num_workers=workers,
                                         collate_fn=_as_list)
    images = torch.empty((len(files), *shape), dtype=torch.uint8)
    facts, kept = [], 0
    for chunk in loader:
        for array, reason, size, digest in chunk:
            if array is not None:
                images[kept] = torch.from_numpy(array)
                kept += 1
            facts.append((reason, size, digest))
    return images[:kept].clone() if kept < len(files) else images, facts


@dataclass
class CachedImages:
    """What a cache file holds: the images that decoded, their labels and splits, and the data report's raw facts."""

    images: torch.Tensor  # uint8 (N, C, S, S)
    labels: torch.Tensor  # int64 (N,)
    splits: list[str | None]
    files: list[str]  # relative to the layout's root
    digests: list[str]
    sizes: list[tuple[int, int]]  # each kept image's original (width, height)
    skipped: list[tuple[str, str]]  # (file, reason)
    path: Path | None = None
    built: bool = False  # decoded by this call (False: loaded)


    def reordered(self, order: torch.Tensor) -> CachedImages:
        """The samples in ``order``; the images of a cache just decoded are moved in place (a second copy of
        them would double the memory a large folder needs), a memory-mapped cache's are copied."""
        rows = order.tolist()
        images = permute_rows_(self.images, rows) if self.built else self.images[order]
        return CachedImages(images, self.labels[order], [self.splits[i] for i in rows],
                            [self.files[i] for i in rows], [self.digests[i] for i in rows],
                            [self.sizes[i] for i in rows], self.skipped, self.path, self.built)

    def save(self, path: Path) -> None:
        """Through a temporary name and a rename: a killed run never leaves a half-written cache."""
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save({k: v for k, v in self.__dict__.items() if k not in ("path", "built")}, temporary)
        os.replace(temporary, path)


def permute_rows_(tensor: torch.Tensor, order: list[int]) -> torch.Tensor:
    """``tensor[order]`` in place, following each cycle of the permutation with one row of scratch memory."""
    done = [False] * len(order)
    scratch = torch.empty_like(tensor[0]) if len(order) else None
    for start in range(len(order)):
        if done[start] or order[start] == start:
            done[start] = True
            continue
        scratch.copy_(tensor[start])
        position = start
        while True:
            done[position] = True
            source = order[position]
            if source == start:
                tensor[position].copy_(scratch)
                break
            tensor[position].copy_(tensor[source])
            position = source
    return tensor


def cache_path(cache_dir: Path, layout: Layout, storage: int, channels: int) -> Path:
    return cache_dir / f"{storage}px-{channels}c-{manifest_key(layout, storage, channels)}.pt"


def load_or_build(layout: Layout, storage: int, channels: int, cache_dir: Path, workers: int,
                  arrange: Callable[[CachedImages], torch.Tensor | None] | None = None) -> CachedImages:
    """The cached images of ``layout``; decoded and saved first when no complete cache file has its key.

    ``arrange`` gives the order the samples should be stored in (None: as they are): the data module stores
    them in split order, so each split is a slice of the memory-mapped file, read without a copy.
    """
    path = cache_path(cache_dir, layout, storage, channels)
    if path.is_file():
        saved = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
        cached = CachedImages(**saved, path=path)
        order = arrange(cached) if arrange is not None else None
        if order is not None:  # other split options than the file was stored for: stored again, once
            cached = cached.reordered(order)
            _write(cached, path, cache_dir)
        return cached
    images, facts = decode(layout.files, (channels, storage, storage), workers)
    kept = [i for i, (reason, _, _) in enumerate(facts) if not reason]
    relative = [relative_path(f, layout.root) for f in layout.files]
    cached = CachedImages(
        images=images, labels=torch.tensor([layout.labels[i] for i in kept], dtype=torch.int64),
        splits=[layout.splits[i] for i in kept], files=[relative[i] for i in kept],
        digests=[facts[i][2] for i in kept], sizes=[facts[i][1] for i in kept],
        skipped=[(relative[i], reason) for i, (reason, _, _) in enumerate(facts) if reason])
    order = arrange(cached) if arrange is not None else None
    if order is not None:
        cached.built = True  # decoded here, not mapped from a file: reordered in place
        cached = cached.reordered(order)
    for stale in cache_dir.glob(f"{storage}px-{channels}c-*.pt"):  # the same options, older files
        stale.unlink(missing_ok=True)
    _write(cached, path, cache_dir)
    cached.path, cached.built = path, True
    return cached


def _write(cached: CachedImages, path: Path, cache_dir: Path) -> None:
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        cached.save(path)
    except OSError as err:
        raise OSError(f"--data.cache_dir {cache_dir}: cannot write the image cache ({err.strerror or err}); "
                      "pass a writable folder") from None


def relative_path(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def size_spread(sizes: list[tuple[int, int]]) -> dict[str, list[int]]:
    """min / median / max of the original widths and heights."""
    if not sizes:
        return {}
    widths, heights = [w for w, _ in sizes], [h for _, h in sizes]
    return {"width": [min(widths), int(statistics.median(widths)), max(widths)],
            "height": [min(heights), int(statistics.median(heights)), max(heights)]}
