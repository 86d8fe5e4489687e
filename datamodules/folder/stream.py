"""A folder too large for memory: its images decoded once into LitData chunks, then streamed.

``litdata.optimize`` writes each split's images, decoded exactly as the in-memory cache decodes them
(:func:`datamodules.images.files.load_image`, the module's resize rule, storage size), into chunk files under
``<cache_dir>/stream-<S>px-<C>c-<key>/<split>/``, in parallel; a ``complete`` file written last tells a
finished build from one a killed run left (that one is built again). ``StreamingDataset`` and
``StreamingDataLoader`` read them: shards across ranks and nodes, a shuffle per epoch from the seed, a
mid-epoch position in the loader's ``state_dict``, local disk or object storage. The path to many
machines and large sets is Lightning's own, not this project's.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from functools import partial
from pathlib import Path
from typing import Any

import torch

from datamodules.folder.cache import manifest_key
from datamodules.folder.layout import Layout
from datamodules.images.files import load_image

COMPLETE = "complete"


def require_litdata() -> Any:
    """The ``litdata`` package.

    Raises:
        ValueError: it is not installed (the message says which extra installs it).
    """
    try:
        import litdata
    except ImportError:
        raise ValueError("--data.storage stream needs LitData: pip install 'litexp[stream]' (or litdata)") from None
    return litdata


def stream_root(cache_dir: Path, layout: Layout, splits: dict[str, list[int]], storage: int, channels: int,
                rule: str) -> Path:
    """The chunk folders' root: a key of the files and the decoding (as the in-memory cache's) and of the split
    assignment, which is fixed in the chunks (another ``val_size`` or seed builds other chunks).
    """
    assignment = hashlib.sha256(json.dumps(splits, sort_keys=True).encode()).hexdigest()[:8]
    return cache_dir / f"stream-{storage}px-{channels}c-{manifest_key(layout, storage, channels, rule)}-{assignment}"


def _decode(item: tuple[str, int, int], storage: int, channels: int, rule: str) -> dict[str, Any] | None:
    """One file as a sample, or None (LitData leaves it out) when it is not an image that can be read."""
    path, label, index = item
    try:
        image = load_image(Path(path), (channels, storage, storage), rule=rule)
    except Exception:  # noqa: BLE001 - unreadable, truncated, empty: the in-memory path reports them by name
        return None
    return {"image": image, "label": label, "index": index}


def build(layout: Layout, splits: dict[str, list[int]], storage: int, channels: int, cache_dir: Path,
          workers: int, rule: str = "crop") -> tuple[Path, dict[str, int]]:
    """The chunk folders of every split (built now when no complete build has this key); samples per split."""
    root = stream_root(cache_dir, layout, splits, storage, channels, rule)
    marker = root / COMPLETE
    if marker.is_file():
        return root, json.loads(marker.read_text())
    litdata = require_litdata()
    shutil.rmtree(root, ignore_errors=True)  # a build a killed run left half-written
    counts = {}
    for split, rows in splits.items():
        if not rows:
            continue
        inputs = [(str(layout.files[i]), layout.labels[i], n) for n, i in enumerate(rows)]
        litdata.optimize(fn=partial(_decode, storage=storage, channels=channels, rule=rule), inputs=inputs,
                         output_dir=str(root / split), chunk_bytes="64MB", num_workers=max(1, workers),
                         mode="overwrite", verbose=False, start_method="fork")
        counts[split] = samples_in(root / split)
    temporary = root / f".{COMPLETE}.{os.getpid()}"
    temporary.write_text(json.dumps(counts))
    os.replace(temporary, marker)
    return root, counts


def samples_in(folder: Path) -> int:
    """Samples LitData wrote into ``folder`` (its ``index.json``; a ``StreamingDataset``'s length would be this
    rank's share once a process group is up).
    """
    index = json.loads((folder / "index.json").read_text())
    return sum(int(chunk["chunk_size"]) for chunk in index["chunks"])


def _as_batch(items: list[dict[str, Any]], with_index: bool) -> tuple[torch.Tensor, ...]:
    images = torch.stack([item["image"] for item in items])
    labels = torch.tensor([int(item["label"]) for item in items], dtype=torch.int64)
    if with_index:
        return images, labels, torch.tensor([int(item["index"]) for item in items], dtype=torch.int64)
    return images, labels


def loader(root: Path, split: str, batch_size: int, train: bool, seed: int, workers: int,
           with_index: bool = False) -> Any:
    """A ``StreamingDataLoader`` of ``(uint8 images, labels[, index])`` batches of one split.

    Training shuffles per epoch and drops what would leave ranks with unequal steps (at most a few samples
    per epoch, other ones each epoch); evaluation keeps every sample exactly once across ranks.
    """
    litdata = require_litdata()
    dataset = litdata.StreamingDataset(str(root / split), shuffle=train, drop_last=train, seed=seed)
    return litdata.StreamingDataLoader(dataset, batch_size=batch_size, num_workers=workers,
                                       collate_fn=partial(_as_batch, with_index=with_index), drop_last=train)
