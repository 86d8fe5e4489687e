"""Your own images: a folder of photos (or a CSV of them) as a data module, decoded once and kept in memory.

The files are found by :mod:`datamodules.folder_layout`, decoded once into a uint8 cache by
:mod:`datamodules.image_cache` (a second run starts without decoding), and then served like the bundled
data sets: whole uint8 batches moved to the device, where training takes a random resized crop and a
flip of each stored image for the whole batch at once, and evaluation its centre crop: the same
preprocessing ``predict``, ``export`` and ``serve`` put in front of the net. A data report (images per
class and split, image sizes, files skipped and why, identical files across splits) is printed before
training and saved as ``data_report.json`` in the run folder.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from datamodules.augment import center_crop, random_flip, random_resized_crop, resized_crop_flip_normalize
from datamodules.folder_layout import Layout, discover, images_below, stratified_split
from datamodules.image_cache import CachedImages, decode, load_or_build, relative_path, size_spread
from datamodules.image_classification import ImageClassificationDataModule
from datamodules.preprocess import ImagePreprocess

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: evaluation's centre crop keeps this fraction of the stored side (torchvision's 224 of 256)
CROP_FRACTION = 0.875


class ImageFolderDataModule(ImageClassificationDataModule):
    """Images in class folders (``root/<class>/...``), split folders (``root/{train,val,test}/<class>/...``)
    or a CSV, for classification.

    Args:
        root: the folder of images (see :mod:`datamodules.folder_layout` for the layouts).
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
        super().__init__(root, False, batch_size, eval_batch_size, seed, 0, data_on_device, predict_split,
                         predict_dir)
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
        self.storage_size = storage_size or round(image_size / CROP_FRACTION)
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
        #: the LitData chunk folders and samples per split when the images are streamed (None: in memory)
        self._stream: tuple[Path, dict[str, int]] | None = None
        self._train_stream: Any = None  # the streamed training loader, and its epoch count from a checkpoint
        self._stream_epoch: int | None = None
        self.cache_dir = Path(cache_dir) if cache_dir else Path(root) / ".litexp-cache"
        self.decode_workers = max(0, min(decode_workers, os.cpu_count() or 1))
        self._class_names: list[str] = []
        self.report: dict[str, Any] = {}
        self._predict_targets: torch.Tensor | None = None
        self._cached: CachedImages | None = None
        self._listed: Layout | None = None
        self._layout_seen: Layout | None = None
        self._split_memo: tuple[Any, dict[str, torch.Tensor]] | None = None

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
        return self.channels, self.storage_size, self.storage_size

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.channels, self.image_size, self.image_size

    #: how a file of another size becomes a stored image (``datamodules.image_files.RESIZE_RULES``)
    resize_rule = "crop"
    #: a folder's size is anyone's: its short last batch (possibly one image) is dropped, as timm does
    drop_last_train = True

    def preprocessor(self) -> ImagePreprocess:
        return ImagePreprocess(self.mean, self.std, crop=self.image_size)

    def to_float(self, x: torch.Tensor, train: bool) -> torch.Tensor:
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
        return x.float().sub_(prep.mean * 255).div_(prep.std * 255)

    # -- data -----------------------------------------------------------------------------------

    def _layout(self) -> Layout:
        """The folder's files, listed once per module (prepare_data, setup and the storage choice all need them)."""
        if self._listed is None:
            self._listed = discover(self.root, self.csv)
        return self._listed

    def _cache(self) -> CachedImages:
        """The cached images (decoded first when needed); kept, so ``setup`` after ``prepare_data`` in the same
        process neither lists the folder nor reads the cache file again."""
        if self._cached is not None:
            return self._cached
        layout = self._layout()
        self._check_layout(layout)
        self._layout_seen = layout
        self._cached = load_or_build(layout, self.storage_size, self.channels, self.cache_dir, self.decode_workers,
                                     arrange=self._split_order)
        return self._cached

    def _splits(self, cached: CachedImages) -> dict[str, torch.Tensor]:
        """Rows per split; kept for the files it was computed for (the storage order, setup and the report ask)."""
        key = (tuple(cached.files), tuple(cached.splits))
        if self._split_memo is not None and self._split_memo[0] == key:
            return self._split_memo[1]
        if all(s is None for s in cached.splits):
            parts = stratified_split(cached.labels, self.val_size, self.test_size, self.seed, cached.files)
        else:
            parts = {name: torch.tensor([i for i, s in enumerate(cached.splits) if s == name], dtype=torch.int64)
                     for name in ("train", "val", "test")}
        self._split_memo = (key, parts)
        return parts

    def _split_order(self, cached: CachedImages) -> torch.Tensor | None:
        """Train, then validation, then test rows (None when the cache is stored so already)."""
        order = torch.cat([self._splits(cached)[name] for name in ("train", "val", "test")])
        return None if torch.equal(order, torch.arange(len(order))) else order

    def streams(self, layout: Layout) -> bool:
        """Whether the decoded images are streamed from disk rather than held in memory (``storage``)."""
        if self.storage != "auto":
            return self.storage == "stream"
        budget = self.memory_budget_gb
        if budget is None:
            budget = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30 / 2
        return len(layout.files) * self.channels * self.storage_size ** 2 > budget * 2**30

    def _streamed(self) -> tuple[Path, dict[str, int]]:
        """LitData chunks of every split (built on first use; see :mod:`datamodules.image_stream`)."""
        if self._stream is None:
            from datamodules import image_stream

            layout = self._layout()
            self._check_layout(layout)
            keys = [relative_path(f, layout.root) for f in layout.files]
            labels = torch.tensor(layout.labels, dtype=torch.int64)
            if all(s is None for s in layout.splits):
                parts = stratified_split(labels, self.val_size, self.test_size, self.seed, keys)
                rows = {name: index.tolist() for name, index in parts.items()}
            else:
                rows = {name: [i for i, split in enumerate(layout.splits) if split == name]
                        for name in ("train", "val", "test")}
            self._layout_seen = layout
            self._stream_rows = rows
            self._stream = image_stream.build(layout, rows, self.storage_size, self.channels, self.cache_dir,
                                              self.decode_workers)
        return self._stream

    def _check_layout(self, layout: Layout) -> None:
        if len(layout.classes) < 2:
            raise ValueError(f"--data.root {self.root}: {len(layout.classes)} class(es) found ({layout.source}); "
                             "a classifier needs at least two class folders with images")

    def prepare_data(self) -> None:
        """Decode once, on one process per node (Lightning calls this before ``setup`` on every rank)."""
        if self.streams(self._layout()):
            self._streamed()
            return
        self._decoded_now = self._cache().built

    def setup(self, stage: str) -> None:
        if self.train is not None or self._stream is not None and self.report:
            return
        if self._stream is not None or self.streams(self._layout()):
            self._setup_stream(stage)
            return
        cached = self._cache()
        layout = self._layout_seen
        self.class_names = list(layout.classes)
        self._check_classes(cached.labels, "the readable images", cached)
        parts = self._splits(cached)
        for name in ("train", "val"):
            self._check_classes(cached.labels[parts[name]], f"the {name} split", cached)
        # stored in split order (see _split_order): each split is a slice, a view of the memory-mapped file
        start, splits = 0, {}
        for name in ("train", "val", "test"):
            stop = start + len(parts[name])
            splits[name] = (cached.images[start:stop], cached.labels[start:stop])
            start = stop
        self.train, self.val = splits["train"], splits["val"]
        self.test = splits["test"] if len(parts["test"]) else None
        if self.test is None and self.predict_split == "test":
            self.predict_split = "val"  # no test split was asked for: predict (and export's parity check) use val
        self.report = self._report(layout, cached, parts)
        if stage == "fit":
            self._publish_report()

    def _setup_stream(self, stage: str) -> None:
        if self.balanced:
            raise ValueError("--data.balanced is for images in memory; with --data.storage stream use "
                             "--model.init_args.class_weights instead")
        root, counts = self._streamed()
        layout = self._layout_seen
        self.class_names = list(layout.classes)
        per_split = {}
        for name, rows in self._stream_rows.items():
            found = Counter(layout.labels[i] for i in rows)
            per_split[name] = {c: found.get(i, 0) for i, c in enumerate(self.class_names)}
        for name in ("train", "val"):
            empty = [c for c, n in per_split[name].items() if n == 0]
            if empty:
                raise ValueError(f"--data.root {self.root}: class {', '.join(empty[:5])} has no images in the {name} "
                                 "split; add images (a class needs at least two to be split) or remove the class")
        if self.predict_split == "test" and not counts.get("test"):
            self.predict_split = "val"
        listed = sum(len(rows) for rows in self._stream_rows.values())
        self.report = {"root": str(Path(self.root).resolve()), "csv": self._csv_path(), "layout": layout.source,
                       "classes": self.class_names,
                       "images": per_split, "streamed": counts, "storage": "stream", "chunks": str(root),
                       "skipped": [{"file": "(not named when streaming)", "reason": "unreadable"}] *
                       (listed - sum(counts.values())), "original_sizes": {}, "identical_across_splits": [],
                       "stored_at": self.storage_size, "image_size": self.image_size, "decoded_now": False}
        if stage == "fit":
            self._publish_report()

    def _stream_loader(self, split: str, train: bool, with_index: bool = False) -> Any:
        from datamodules import image_stream

        root, counts = self._streamed()
        if not counts.get(split):
            raise ValueError(f"--data.root {self.root} has no {split} split: pass --data.test_size 0.1 (a part of "
                             "each class held out), or add test/<class>/ folders beside train/ and val/")
        batch_size = self.batch_size
        if not train:  # LitData hands ranks whole batches first: a batch too big leaves a rank with nothing
            world_size = self.trainer.world_size if self.trainer is not None else 1
            batch_size = min(self.eval_batch_size, max(1, counts[split] // world_size))
        return image_stream.loader(root, split, batch_size, train, self.seed, min(2, self.decode_workers), with_index)

    def train_dataloader(self) -> Any:
        if self._stream is None:
            return super().train_dataloader()
        self._train_stream = self._stream_loader("train", True)
        self._restore_stream_epoch()
        return self._train_stream

    # LitData shuffles by its loader's own count of epochs, which starts at 0 in a new process. Lightning hands
    # the loader its saved state only when a run resumes mid-epoch; resumed from a checkpoint taken at an epoch's
    # end (last.ckpt) the count would restart and repeat epoch 0's order. The count is saved with this module's
    # state and given back to the loader, whichever of the two exists first.

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if self._train_stream is not None:
            state["stream_epoch"] = int(self._train_stream.current_epoch)
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._stream_epoch = state_dict.get("stream_epoch")
        self._restore_stream_epoch()

    def _restore_stream_epoch(self) -> None:
        if self._train_stream is not None and self._stream_epoch is not None:
            self._train_stream.current_epoch = self._stream_epoch
            self._stream_epoch = None

    def val_dataloader(self) -> Any:
        return self._stream_loader("val", False) if self._stream is not None else super().val_dataloader()

    def predict_dataloader(self) -> Any:
        if self._stream is not None and self.predict_dir is None:
            return self._stream_loader(self.predict_split, False, with_index=True)
        return super().predict_dataloader()

    def _check_classes(self, labels: torch.Tensor, where: str, cached: CachedImages) -> None:
        counts = torch.bincount(labels, minlength=len(self.class_names))
        empty = [self.class_names[i] for i in (counts == 0).nonzero().flatten().tolist()]
        if empty:
            skipped = f"; {len(cached.skipped)} file(s) were skipped as unreadable" if cached.skipped else ""
            raise ValueError(f"--data.root {self.root}: class {', '.join(empty[:5])} has no images in {where}"
                             f"{skipped}; add images (a class needs at least two to be split) or remove the class")

    def _report(self, layout: Layout, cached: CachedImages, parts: dict[str, torch.Tensor]) -> dict[str, Any]:
        per_split = {}
        for name, index in parts.items():
            counts = Counter(cached.labels[index].tolist())
            per_split[name] = {c: counts.get(i, 0) for i, c in enumerate(self.class_names)}
        split_of = {int(i): name for name, index in parts.items() for i in index.tolist()}
        seen: dict[str, tuple[str, str]] = {}
        across = []
        for i, digest in enumerate(cached.digests):
            if digest in seen and seen[digest][1] != split_of.get(i):
                across.append([seen[digest][0], cached.files[i]])
            seen.setdefault(digest, (cached.files[i], split_of.get(i, "")))
        return {"root": str(Path(self.root).resolve()), "csv": self._csv_path(), "layout": layout.source,
                "classes": self.class_names,
                "images": per_split, "storage": "memory", "original_sizes": size_spread(cached.sizes),
                "skipped": [{"file": f, "reason": r} for f, r in cached.skipped],
                "identical_across_splits": across, "stored_at": self.storage_size, "image_size": self.image_size,
                "cache": str(cached.path), "decoded_now": cached.built or getattr(self, "_decoded_now", False)}

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

    def train_sample_weights(self) -> torch.Tensor | None:
        if not self.balanced or self.train is None:
            return None
        labels = self.train[1]
        counts = torch.bincount(labels, minlength=self.num_classes).clamp(min=1)
        return 1.0 / counts[labels].double()

    def test_dataloader(self) -> Any:
        if self._stream is not None:
            return self._stream_loader("test", False)
        if self.test is None and self.train is not None:
            raise ValueError(f"--data.root {self.root} has no test split: pass --data.test_size 0.1 (a part of each "
                             "class held out), or add test/<class>/ folders beside train/ and val/")
        return super().test_dataloader()

    # -- predict --------------------------------------------------------------------------------

    def predict_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.predict_dir is None:
            return super().predict_tensors()
        if self._predict_files is None:
            self._read_predict_dir()
        return self._predict_files[0], self._predict_targets

    def _read_predict_dir(self) -> None:
        """Every image below ``predict_dir``, prepared as the training images were stored; a file in a
        sub-folder named like a training class gets that class as its target."""
        folder = Path(self.predict_dir)
        if not folder.is_dir():
            raise FileNotFoundError(f"--data.predict_dir {folder}: no such folder; pass a folder of images")
        files = list(images_below(folder))
        images, facts = decode(files, self.raw_image_shape, self.decode_workers)
        kept = [i for i, (reason, _, _) in enumerate(facts) if not reason]
        skipped = [f"{files[i].relative_to(folder)} ({reason})" for i, (reason, _, _) in enumerate(facts) if reason]
        if skipped:
            rank_zero_warn(f"--data.predict_dir {folder}: skipped {len(skipped)} file(s): {', '.join(skipped[:10])}")
        if not kept:
            raise ValueError(f"--data.predict_dir {folder} holds no readable images; pass a folder of image files")
        names = [str(files[i].relative_to(folder)) for i in kept]
        classes = {name: index for index, name in enumerate(self.class_names)}
        targets = [classes.get(Path(n).parts[0], -1) if len(Path(n).parts) > 1 else -1 for n in names]
        self._predict_files = (images, names)
        self._predict_targets = torch.tensor(targets, dtype=torch.int64)
