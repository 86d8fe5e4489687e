"""Your own images: a folder of photos (or a CSV of them) as a data module, decoded once and kept in memory.

The files are found by :mod:`datamodules.folder.layout`, decoded once and kept by a storage
(:mod:`datamodules.folder.storage`: a memory-mapped uint8 cache, or LitData chunks for folders past memory;
a second run starts without decoding), and then served like the bundled
data sets: whole uint8 batches moved to the device, where training takes a random resized crop and a
flip of each stored image for the whole batch at once, and evaluation its centre crop: the same
preprocessing ``predict``, ``export`` and ``serve`` put in front of the net. A data report (images per
class and split, image sizes, files skipped and why, identical files across splits) is printed before
training and saved as ``data_report.json`` in the run folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from typing_extensions import override

from datamodules.base.folds import Pool, groups_from_paths
from datamodules.base.image_classification import ImageClassificationDataModule
from datamodules.base.splits import stratified_split
from datamodules.folder.layout import Layout, discover
from datamodules.folder.predict_dir import read_predict_dir
from datamodules.folder.storage import (
    MemoryStorage,
    Opened,
    Storage,
    StreamStorage,
    images_per_class,
    memory_budget_exceeded,
)
from datamodules.images.augment import random_flip, random_resized_crop, resized_crop_flip_normalize
from datamodules.images.preparation import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImagePreprocess,
    center_crop,
    normalize_,
    storage_side,
)


class ImageFolderDataModule(ImageClassificationDataModule):
    """Images in class folders (``root/<class>/...``), split folders (``root/{train,val,test}/<class>/...``)
    or a CSV, for classification.

    Args:
        root: the folder of images (see :mod:`datamodules.folder.layout` for the layouts).
        image_size: side of the square images the net receives.
        storage_size: side the images are stored at (shorter side resized, centre cut); default image_size / 0.875.
        val_size: fraction of each class held out for validation (class-folder layout and a CSV without splits).
        test_size: fraction of each class held out for test (0: no test split).
        csv: a CSV of path,label[,split] instead of folders (paths relative to the CSV).
        channels: 3 (RGB) or 1 (grey); every image is converted.
        mean: per-channel mean for normalisation (ImageNet's, as torchvision's pretrained weights expect).
        std: per-channel standard deviation for normalisation.
        crop_scale: area fraction range of training's random resized crop; [1, 1] trains on evaluation's view.
        flip: mirror training images left-right at random.
        balanced: draw training images so every class is equally likely (with replacement), for imbalanced classes.
        storage: memory (the cache in memory), stream (LitData chunks on disk, streamed, sharded across ranks), or
            auto (memory when the decoded images fit memory_budget_gb).
        memory_budget_gb: the most the decoded images may take in memory before auto streams; default half the RAM.
        cache_dir: where the decoded images are kept; default root/.litexp-cache.
        decode_workers: processes that decode the files the first time.
        batch_size: training batch size.
        eval_batch_size: batch size for validation, test and predict.
        seed: seed of the split, the shuffling and the augmentation.
        data_on_device: move the whole cache to the accelerator once.
        predict_split: the split predict runs on without predict_dir.
        predict_dir: predict the images below this folder (class sub-folders named like the classes give targets).
    """

    def __init__(
        self,
        root: str = "images",
        image_size: int = 224,
        storage_size: int | None = None,
        val_size: float = 0.1,
        test_size: float = 0.0,
        csv: str | None = None,
        channels: int = 3,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        crop_scale: tuple[float, float] = (0.08, 1.0),
        flip: bool = True,
        balanced: bool = False,
        storage: Literal["auto", "memory", "stream"] = "auto",
        memory_budget_gb: float | None = None,
        cache_dir: str | None = None,
        decode_workers: int = 4,
        batch_size: int = 64,
        eval_batch_size: int | None = 256,
        seed: int = 137,
        data_on_device: bool = True,
        predict_split: Literal["train", "val", "test"] = "test",
        predict_dir: str | None = None,
    ) -> None:
        super().__init__(data_dir=root, download=False, batch_size=batch_size, eval_batch_size=eval_batch_size,
                         seed=seed, pad=0, data_on_device=data_on_device, predict_split=predict_split,
                         predict_dir=predict_dir)
        if image_size < 8:
            raise ValueError(f"--data.image_size must be >= 8, got {image_size}")
        if channels not in (1, 3):
            raise ValueError(f"--data.channels must be 1 or 3, got {channels}")
        if not (0 <= val_size < 1 and 0 <= test_size < 1 and val_size + test_size < 1):
            raise ValueError(f"--data.val_size {val_size} and --data.test_size {test_size} must be fractions "
                             "in [0, 1) that leave images to train on")
        if len(mean) != channels or len(std) != channels:
            raise ValueError(f"--data.mean and --data.std need {channels} values (one per channel)")
        self.root = root
        self.image_size = image_size
        self.storage_size = storage_size or storage_side(image_size)
        if self.storage_size < image_size:
            raise ValueError(f"--data.storage_size {storage_size} is smaller than --data.image_size {image_size}")
        self.val_size, self.test_size, self.csv = val_size, test_size, csv
        self.channels = channels
        self.mean, self.std = tuple(mean), tuple(std)
        self.crop_scale = tuple(crop_scale)
        self.flip = flip
        self.balanced = balanced
        if storage not in ("auto", "memory", "stream"):
            raise ValueError(f"--data.storage must be auto, memory or stream, got {storage!r}")
        self.storage = storage
        self.memory_budget_gb = memory_budget_gb
        self._storage: Storage | None = None  # chosen once the folder is listed (see storage_object)
        self._storage_state: dict[str, Any] = {}  # a checkpoint's storage state, until the storage exists
        self.cache_dir = Path(cache_dir) if cache_dir else Path(root) / ".litexp-cache"
        self.decode_workers = max(0, min(decode_workers, os.cpu_count() or 1))
        self._class_names: list[str] = []
        self.report: dict[str, Any] = {}
        self._predict_targets: torch.Tensor | None = None
        self._listed: Layout | None = None

    @property
    def class_names(self) -> list[str]:  # type: ignore[override]
        """The class folders' (or the CSV's labels') sorted names: known before ``setup`` (serve needs them)."""
        if not self._class_names:
            layout = self._layout()
            self._check_layout(layout)  # an empty folder is one line wherever its classes are first asked for
            self._class_names = list(layout.classes)
        return self._class_names

    @class_names.setter
    def class_names(self, names: list[str]) -> None:
        self._class_names = list(names)

    # -- shapes and preprocessing ---------------------------------------------------------------

    @property
    def raw_image_shape(self) -> tuple[int, int, int]:
        """(C, S, S): the stored images, ``storage_size`` a side."""
        return self.channels, self.storage_size, self.storage_size

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the images the net receives: ``image_size`` a side."""
        return self.channels, self.image_size, self.image_size

    #: how a file of another size becomes a stored image (``datamodules.images.preparation.RESIZE_RULES``): read by
    #: the cache, the stream, ``predict_dir``, and recorded in checkpoints for ``export`` and ``serve``
    resize_rule = "crop"
    #: a folder's size is anyone's: its short last batch (possibly one image) is dropped, as timm does
    drop_last_train = True

    def preprocessor(self) -> ImagePreprocess:
        """Evaluation's view: the centre ``image_size`` crop of a stored image, normalised."""
        return ImagePreprocess(self.mean, self.std, crop=self.image_size)

    def to_float(self, x: torch.Tensor, train: bool) -> torch.Tensor:
        """uint8 stored images -> the net's normalised float input; training crops at random and flips."""
        if not train:  # channels-first, whatever the cache's layout: the net's convolutions expect it
            return self._preprocess_on(x.device)(x).contiguous()
        generator = self._device_generator(x.device)
        prep = self._preprocess_on(x.device)
        if self.crop_scale == (1.0, 1.0):  # the whole image: evaluation's view (torchvision falls back to it too)
            x = center_crop(x, self.image_size)
        elif x.device.type == "cpu":  # image by image on uint8, flip and normalisation included: faster on the CPU
            return resized_crop_flip_normalize(x, self.image_size, prep.mean * 255, prep.std * 255, self.crop_scale,
                                               flip=self.flip, generator=generator)
        else:
            x = random_resized_crop(x.float(), self.image_size, self.crop_scale, generator=generator)
        if self.flip:
            x = random_flip(x, generator)
        return normalize_(x.float(), prep.mean * 255, prep.std * 255)

    # -- data -----------------------------------------------------------------------------------

    def _layout(self) -> Layout:
        """The folder's files, listed once per module (prepare_data, setup and the storage choice all need them)."""
        if self._listed is None:
            self._listed = discover(self.root, self.csv)
        return self._listed

    def streams(self, layout: Layout) -> bool:
        """Whether the decoded images are streamed from disk rather than held in memory (``storage``)."""
        if self.storage != "auto":
            return self.storage == "stream"
        return memory_budget_exceeded(len(layout.files), self.channels, self.storage_size, self.memory_budget_gb)

    @property
    def storage_object(self) -> Storage:
        """Where the decoded images live (:mod:`datamodules.folder.storage`), chosen once from the listing."""
        if self._storage is None:
            layout = self._layout()
            self._check_layout(layout)
            self._storage = (StreamStorage if self.streams(layout) else MemoryStorage)(self, layout)
            self._storage.load_state_dict(self._storage_state)
        return self._storage

    def stratified(self, labels: torch.Tensor, keys: list[str]) -> dict[str, torch.Tensor]:
        """Rows per split of a pool without split folders: each class's ``val_size`` and ``test_size`` held out,
        chosen by the hash of the seed and each file's relative path (so the choice does not depend on order).
        """
        return stratified_split(labels, float(self.val_size), self.seed, float(self.test_size), keys)

    def _check_layout(self, layout: Layout) -> None:
        if len(layout.classes) < 2:
            raise ValueError(f"--data.root {self.root}: {len(layout.classes)} class(es) found ({layout.source}); "
                             "a classifier needs at least two class folders with images")

    @override
    def prepare_data(self) -> None:
        """Decode once, on one process per node (Lightning calls this before ``setup`` on every rank)."""
        self._decoded_now = self.storage_object.prepare()

    @override
    def setup(self, stage: str) -> None:
        """Open the storage's splits, check every class is trained and validated on, write the data report."""
        if self.report:
            return
        opened = self.storage_object.open()
        self.class_names = list(self.storage_object.layout.classes)
        if self.fold is not None:
            self._apply_fold(opened)
        self._check_classes(opened)
        if opened.tensors:
            self.train, self.val = opened.tensors["train"], opened.tensors["val"]
            self.test = opened.tensors["test"] if len(opened.labels["test"]) else None
        layout = self.storage_object.layout
        images = {name: images_per_class(labels, self.class_names) for name, labels in opened.labels.items()}
        report = {"root": str(Path(self.root).resolve()), "csv": self._csv_path(), "layout": layout.source,
                  "classes": self.class_names, "images": images, "stored_at": self.storage_size,
                  "image_size": self.image_size, **opened.report}
        report["decoded_now"] = report["decoded_now"] or getattr(self, "_decoded_now", False)
        self.report = report
        if self.predict_split == "test" and not self._has_split("test"):
            self.predict_split = "val"  # no test split was asked for: predict (and export's parity check) use val
        if stage == "fit":
            self._publish_report()

    # -- cross-validation -----------------------------------------------------------------------

    def _memory(self) -> MemoryStorage:
        storage = self.storage_object
        if not isinstance(storage, MemoryStorage):
            raise ValueError(f"--data.root {self.root}: cross-validation needs the images in memory, and they are "
                             "streamed; pass --data.storage memory (with --data.memory_budget_gb if they fit)")
        return storage

    @override
    def fold_pool(self, group_by: str | None = None) -> Pool:
        """The training and validation images (a test split, folder or ``test_size``, stays out), by relative path.

        ``group_by`` is a column of the CSV (for ``--data.csv``) or a regex on the relative path (its first group,
        else its match): images of one group always share a fold.
        """
        storage = self._memory()
        opened = storage.open()
        n = len(opened.labels["train"]) + len(opened.labels["val"])
        cached = storage.cached
        sources = list(cached.files[:n])
        return Pool(sources, cached.labels[:n].clone(), self._groups(sources, group_by) if group_by else None)

    def pool_images(self, sources: list[str]) -> torch.Tensor:
        """The stored uint8 images (N, C, S, S) of pool samples named by ``fold_pool`` (relative paths)."""
        cached = self._memory().cached
        row = {name: i for i, name in enumerate(cached.files)}
        return cached.images[torch.tensor([row[s] for s in sources], dtype=torch.long)]

    def _groups(self, sources: list[str], group_by: str) -> list[str]:
        if not self.csv:
            return groups_from_paths(sources, group_by)
        import csv

        path = Path(self.csv)
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns = [c.strip() for c in reader.fieldnames or []]
            if group_by not in columns:
                raise ValueError(f"--group_by {group_by}: --data.csv {path} has no such column (has "
                                 f"{', '.join(columns)}); pass one of its columns")
            root = self.storage_object.layout.root
            from datamodules.folder.cache import relative_path

            of = {relative_path((path.parent / row["path"].strip()).resolve(), root): (row.get(group_by) or "").strip()
                  for row in reader if row.get("path")}
        missing = [s for s in sources if not of.get(s)]
        if missing:
            raise ValueError(f"--group_by {group_by}: {missing[0]} has no value in that column of {path}; "
                             "give every row a group")
        return [of[s] for s in sources]

    def _apply_fold(self, opened: Opened) -> None:
        """Train on the pool without the run's fold, validate on it (the images are copied out of the cache)."""
        pool = self.fold_pool(self.fold.group_by)
        parts = self.split_pool(pool)
        images = self._memory().cached.images[:len(pool.sources)]
        for name in ("train", "val"):
            rows = parts[name]
            opened.tensors[name] = (images[rows], pool.labels[rows])
            opened.labels[name] = pool.labels[rows]

    @override
    @property
    def strided_evaluation(self) -> bool:
        """Whether, under DDP, rank r evaluates samples r, r + world, ... (in memory yes; streamed, by chunks)."""
        return self.storage_object.strided_evaluation

    def split_names(self, split: str) -> list[str] | None:
        """Each image of ``split``'s path relative to the root, in its loader's order."""
        return self.fold_sources.get(split) or self.storage_object.split_sources(split)

    def _has_split(self, split: str) -> bool:
        """Whether ``split`` holds images (False before ``setup``)."""
        return sum(self.report.get("images", {}).get(split, {}).values()) > 0

    def _check_classes(self, opened: Opened) -> None:
        """One line naming a class without images in the pool, or in the training or validation split."""
        pool = torch.cat(list(opened.labels.values()))
        skipped = f"; {len(opened.skipped)} file(s) were skipped as unreadable" if opened.skipped else ""
        for where, labels in (("the readable images", pool), ("the train split", opened.labels["train"]),
                              ("the val split", opened.labels["val"])):
            counts = torch.bincount(labels, minlength=len(self.class_names))
            empty = [self.class_names[i] for i in (counts == 0).nonzero().flatten().tolist()]
            if empty:
                raise ValueError(f"--data.root {self.root}: class {', '.join(empty[:5])} has no images in {where}"
                                 f"{skipped}; add images (a class needs at least two to be split) or remove the class")

    def _csv_path(self) -> str | None:
        """The CSV that lists the files, resolved (None: folders list them); the report names the data by it."""
        return str(Path(self.csv).resolve()) if self.csv else None

    def _publish_report(self) -> None:
        report = self.report
        # every rank asks: Trainer.log_dir is a broadcast, and a rank that skipped it would hang the others
        log_dir = self.trainer.log_dir if self.trainer is not None else None
        if log_dir and self.trainer.is_global_zero:
            path = Path(log_dir) / "data_report.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(report, indent=2) + "\n")
        lines = [f"Data: {report['root']} ({report['layout']}, {len(self.class_names)} classes; "
                 f"{'decoded and cached' if report['decoded_now'] else 'from the cache'})"]
        for name, counts in report["images"].items():
            if sum(counts.values()):
                lines.append(f"  {name:5s} {sum(counts.values()):6d} images, per class "
                             f"{min(counts.values())}-{max(counts.values())}")
        sizes = report["original_sizes"]
        if sizes:
            lines.append(f"  sizes: width {sizes['width'][0]}-{sizes['width'][2]} (median {sizes['width'][1]}), "
                         f"height {sizes['height'][0]}-{sizes['height'][2]} (median {sizes['height'][1]})")
        rank_zero_info("\n".join(lines))
        if report["skipped"]:
            first = ", ".join(f"{s['file']} ({s['reason']})" for s in report["skipped"][:3])
            rank_zero_warn(f"--data.root {self.root}: skipped {len(report['skipped'])} file(s): {first}"
                           f"{' ...' if len(report['skipped']) > 3 else ''}; the full list is in data_report.json")
        if report["identical_across_splits"]:
            pair = report["identical_across_splits"][0]
            rank_zero_warn(f"--data.root {self.root}: {len(report['identical_across_splits'])} file(s) are identical "
                           f"to one in another split (e.g. {pair[0]} and {pair[1]}): validation overestimates")

    @override
    def train_sample_weights(self) -> torch.Tensor | None:
        """Inverse class frequencies with ``balanced`` (every class equally likely), else None."""
        if not self.balanced or self.train is None:
            return None
        labels = self.train[1]
        counts = torch.bincount(labels, minlength=self.num_classes).clamp(min=1)
        return 1.0 / counts[labels].double()

    # -- loaders: the storage's, whichever it is ----------------------------------------------

    @override
    def train_dataloader(self) -> Any:
        """Training batches of the storage (shuffled per epoch from the seed)."""
        return self.storage_object.loader("train", train=True)

    @override
    def val_dataloader(self) -> Any:
        """Validation batches of the storage."""
        return self.storage_object.loader("val", train=False)

    @override
    def test_dataloader(self) -> Any:
        """Test batches of the storage.

        Raises:
            ValueError: the folder has no test split (the message says how to make one).
        """
        if not self._has_split("test"):
            raise ValueError(f"--data.root {self.root} has no test split: pass --data.test_size 0.1 (a part of each "
                             "class held out), or add test/<class>/ folders beside train/ and val/")
        return self.storage_object.loader("test", train=False)

    @override
    def predict_dataloader(self) -> Any:
        """Batches of ``predict_split`` with each sample's index (or of ``predict_dir``'s files)."""
        if self.predict_dir is None:
            return self.storage_object.loader(self.predict_split, train=False, with_index=True)
        return super().predict_dataloader()

    @override
    def state_dict(self) -> dict[str, Any]:
        """The augmentation generators and the storage's loader state."""
        state = super().state_dict()
        if self._storage is not None:
            state.update(self._storage.state_dict())
        return state

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (the storage's part now, or once the storage is chosen)."""
        super().load_state_dict(state_dict)
        self._storage_state = dict(state_dict)
        if self._storage is not None:
            self._storage.load_state_dict(self._storage_state)

    # -- predict --------------------------------------------------------------------------------

    @override
    def predict_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The split's images and labels, or ``predict_dir``'s images with their class folders' targets."""
        if self.predict_dir is None:
            return super().predict_tensors()
        if self._predict_files is None:
            self._read_predict_dir()
        return self._predict_files[0], self._predict_targets

    def _read_predict_dir(self) -> None:
        """Every image below ``predict_dir``, prepared as the training images were stored (targets from class
        sub-folders).
        """
        images, names, self._predict_targets = read_predict_dir(self.predict_dir, self.raw_image_shape,
                                                                self.class_names, self.decode_workers,
                                                                self.resize_rule)
        self._predict_files = (images, names)
