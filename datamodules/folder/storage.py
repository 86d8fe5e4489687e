"""Where a folder's decoded images live: in memory (the cache file, memory-mapped) or streamed (LitData chunks).

The folder data module holds one storage and asks it the same three things whichever it is: decode once
(:meth:`prepare`), what each split holds (:meth:`open`), a loader of one split (:meth:`loader`). What the two
share (the listing, the split assignment, the checks and the data report) stays in the module.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from datamodules.folder.cache import CachedImages, load_or_build, relative_path, size_spread
from datamodules.folder.layout import Layout

SPLITS = ("train", "val", "test")


class Owner(Protocol):
    """What a storage reads of the data module that holds it: its options, its split rule, its batching."""

    storage_size: int
    channels: int
    cache_dir: Path
    decode_workers: int
    resize_rule: str
    balanced: bool
    batch_size: int
    eval_batch_size: int
    seed: int
    shuffle_seed: int
    trainer: Any

    def stratified(self, labels: torch.Tensor, keys: list[str]) -> dict[str, torch.Tensor]:
        """Rows per split of a pool without split folders."""
        ...

    def batches(self, tensors: tuple[torch.Tensor, ...], stage: str, train: bool) -> Any:
        """Tensors in memory served as batches."""
        ...


@dataclass
class Opened:
    """What a storage holds once prepared.

    Attributes:
        labels: every split's labels (int64), in the order its loader serves them without shuffling.
        skipped: ``(file, reason)`` of the files that did not decode.
        report: the storage's own fields of the data report.
        tensors: each split's ``(uint8 images, labels)`` when the images are in memory (empty when streamed).
    """

    labels: dict[str, torch.Tensor]
    skipped: list[tuple[str, str]]
    report: dict[str, Any]
    tensors: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)


def memory_budget_exceeded(files: int, channels: int, side: int, budget_gb: float | None) -> bool:
    """Whether ``files`` decoded images of ``channels`` x ``side`` x ``side`` bytes exceed ``budget_gb``.

    Args:
        files: how many images.
        channels: channels per image.
        side: the stored side in pixels.
        budget_gb: the most the images may take; None: half of this machine's memory.
    """
    if budget_gb is None:
        budget_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30 / 2
    return files * channels * side ** 2 > budget_gb * 2**30


class Storage(ABC):
    """One way of keeping a folder's decoded images; ``owner`` is the data module (its options and batching)."""

    name: str

    def __init__(self, owner: Owner, layout: Layout) -> None:
        self.owner, self.layout = owner, layout

    @abstractmethod
    def prepare(self) -> bool:
        """Decode what is not decoded yet (one process per node).

        Returns:
            Whether images were decoded now (False: they were ready).
        """

    @abstractmethod
    def open(self) -> Opened:
        """The splits as stored (prepared first when needed)."""

    @abstractmethod
    def loader(self, split: str, train: bool, with_index: bool = False) -> Any:
        """Batches ``(uint8 images, labels[, index in the split])`` of one split."""

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must carry for this storage's loaders to continue exactly."""
        return {}

    #: under DDP, rank r evaluates samples r, r + world, ... of a split (what gathering its answers relies on)
    strided_evaluation = True

    @abstractmethod
    def split_sources(self, split: str) -> list[str] | None:
        """Each image of ``split``'s path relative to the root, in its loader's order (None: not known)."""

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 - optional: most storages keep no state
        """Restore :meth:`state_dict`'s entries (absent ones are left as they are)."""

    def split_rows(self, labels: torch.Tensor, splits: list[str | None], keys: list[str]) -> dict[str, torch.Tensor]:
        """Rows per split: as the layout names them, else the module's stratified split by ``keys``."""
        if all(s is None for s in splits):
            return self.owner.stratified(labels, keys)
        return {name: torch.tensor([i for i, s in enumerate(splits) if s == name], dtype=torch.int64)
                for name in SPLITS}


class MemoryStorage(Storage):
    """The decoded images in one uint8 file per folder (see :mod:`datamodules.folder.cache`), memory-mapped.

    Stored in split order, so each split is a slice of the mapping, read without a copy.
    """

    name = "memory"

    def __init__(self, owner: Owner, layout: Layout) -> None:
        super().__init__(owner, layout)
        self.cached: CachedImages | None = None
        self._memo: tuple[Any, dict[str, torch.Tensor]] | None = None

    def _rows(self, cached: CachedImages) -> dict[str, torch.Tensor]:
        """Rows per split, kept for the files they were computed for (the storage order and ``open`` both ask)."""
        key = (tuple(cached.files), tuple(cached.splits))
        if self._memo is None or self._memo[0] != key:
            self._memo = (key, self.split_rows(cached.labels, cached.splits, cached.files))
        return self._memo[1]

    def _split_order(self, cached: CachedImages) -> torch.Tensor | None:
        """Train, then validation, then test rows (None when the cache is stored so already)."""
        order = torch.cat([self._rows(cached)[name] for name in SPLITS])
        return None if torch.equal(order, torch.arange(len(order))) else order

    def _load(self) -> CachedImages:
        if self.cached is None:
            o = self.owner
            self.cached = load_or_build(self.layout, o.storage_size, o.channels, o.cache_dir, o.decode_workers,
                                        rule=o.resize_rule, arrange=self._split_order)
        return self.cached

    def prepare(self) -> bool:
        """Decode the folder into its cache file unless a complete one has the folder's key."""
        return self._load().built

    def open(self) -> Opened:
        """Each split as a slice of the mapped cache, with the report's facts (sizes, skipped, duplicates)."""
        cached = self._load()
        parts = self._rows(cached)
        start, tensors = 0, {}
        for name in SPLITS:
            stop = start + len(parts[name])
            tensors[name] = (cached.images[start:stop], cached.labels[start:stop])
            start = stop
        split_of = {int(i): name for name, index in parts.items() for i in index.tolist()}
        seen: dict[str, tuple[str, str]] = {}
        across = []
        for i, digest in enumerate(cached.digests):
            if digest in seen and seen[digest][1] != split_of.get(i):
                across.append([seen[digest][0], cached.files[i]])
            seen.setdefault(digest, (cached.files[i], split_of.get(i, "")))
        report = {"storage": self.name, "original_sizes": size_spread(cached.sizes),
                  "skipped": [{"file": f, "reason": r} for f, r in cached.skipped],
                  "identical_across_splits": across, "cache": str(cached.path), "decoded_now": cached.built}
        return Opened({name: t[1] for name, t in tensors.items()}, list(cached.skipped), report, tensors)

    def split_sources(self, split: str) -> list[str] | None:
        """The split's slice of the cache's file list."""
        cached = self._load()
        rows = self._rows(cached)
        start = sum(len(rows[name]) for name in SPLITS[:SPLITS.index(split)])
        return list(cached.files[start:start + len(rows[split])])

    def loader(self, split: str, train: bool, with_index: bool = False) -> Any:
        """The module's in-memory batches of ``split`` (on the device with ``data_on_device``)."""
        images, labels = getattr(self.owner, split)
        tensors = (images, labels, torch.arange(len(labels))) if with_index else (images, labels)
        return self.owner.batches(tensors, split, train=train)


class StreamStorage(Storage):
    """LitData chunks of every split on disk (see :mod:`datamodules.folder.stream`), sharded across ranks."""

    name = "stream"
    #: LitData hands each rank whole chunks: a rank's evaluation shard is not every world-th sample
    strided_evaluation = False

    def __init__(self, owner: Owner, layout: Layout) -> None:
        super().__init__(owner, layout)
        self._built: tuple[Path, dict[str, int]] | None = None
        self._rows: dict[str, list[int]] = {}
        self._train: Any = None  # the training loader, and its epoch count from a checkpoint
        self._epoch: int | None = None

    def _build(self) -> tuple[Path, dict[str, int]]:
        if self._built is None:
            from datamodules.folder import stream

            layout, o = self.layout, self.owner
            keys = [relative_path(f, layout.root) for f in layout.files]
            labels = torch.tensor(layout.labels, dtype=torch.int64)
            self._rows = {name: index.tolist() for name, index in self.split_rows(labels, layout.splits, keys).items()}
            self._built = stream.build(layout, self._rows, o.storage_size, o.channels, o.cache_dir, o.decode_workers,
                                       o.resize_rule)
        return self._built

    def prepare(self) -> bool:
        """Write the chunks unless a complete build has the folder's and the split's key.

        Returns:
            False: the stream's data report does not tell a build from a reuse.
        """
        self._build()
        return False

    def open(self) -> Opened:
        """The listed labels per split (what the chunks hold, unreadable files aside) and the chunks' counts.

        Raises:
            ValueError: ``balanced`` sampling was asked for, which needs the images in memory.
        """
        if self.owner.balanced:
            raise ValueError("--data.balanced is for images in memory; with --data.storage stream use "
                             "--model.init_args.class_weights instead")
        root, counts = self._build()
        labels = {name: torch.tensor([self.layout.labels[i] for i in rows], dtype=torch.int64)
                  for name, rows in self._rows.items()}
        listed = sum(len(rows) for rows in self._rows.values())
        report = {"storage": self.name, "streamed": counts, "chunks": str(root),
                  "skipped": [{"file": "(not named when streaming)", "reason": "unreadable"}] *
                  (listed - sum(counts.values())), "original_sizes": {}, "identical_across_splits": [],
                  "decoded_now": False}
        return Opened(labels, [], report)

    def split_sources(self, split: str) -> list[str] | None:
        """The listed files of ``split`` (None when some did not decode: the chunks then hold fewer)."""
        root, counts = self._build()
        rows = self._rows.get(split, [])
        if counts.get(split) != len(rows):
            return None
        return [relative_path(self.layout.files[i], self.layout.root) for i in rows]

    def loader(self, split: str, train: bool, with_index: bool = False) -> Any:
        """A ``StreamingDataLoader`` of ``split``; evaluation batches never larger than a rank's share."""
        from datamodules.folder import stream

        root, counts = self._build()
        o = self.owner
        batch_size = o.batch_size
        if not train:  # LitData hands ranks whole batches first: a batch too big leaves a rank with nothing
            world_size = o.trainer.world_size if o.trainer is not None else 1
            batch_size = min(o.eval_batch_size, max(1, counts[split] // world_size))
        made = stream.loader(root, split, batch_size, train, o.shuffle_seed, min(2, o.decode_workers), with_index)
        if train:
            self._train = made
            self._restore_epoch()
        return made

    # LitData shuffles by its loader's own count of epochs, which starts at 0 in a new process. Lightning hands
    # the loader its saved state only when a run resumes mid-epoch; resumed from a checkpoint taken at an epoch's
    # end (last.ckpt) the count would restart and repeat epoch 0's order. The count is saved with the module's
    # state and given back to the loader, whichever of the two exists first.

    def state_dict(self) -> dict[str, Any]:
        """The training loader's epoch count."""
        return {"stream_epoch": int(self._train.current_epoch)} if self._train is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Hand the saved epoch count to the training loader (now, or when it is made)."""
        self._epoch = state.get("stream_epoch")
        self._restore_epoch()

    def _restore_epoch(self) -> None:
        if self._train is not None and self._epoch is not None:
            self._train.current_epoch = self._epoch
            self._epoch = None


def images_per_class(labels: torch.Tensor, classes: list[str]) -> dict[str, int]:
    """``{class name: images}`` of one split, every class named (zero included)."""
    found = Counter(labels.tolist())
    return {name: found.get(i, 0) for i, name in enumerate(classes)}
