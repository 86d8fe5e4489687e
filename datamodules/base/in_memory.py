"""Base of the data modules whose whole data set sits in memory as tensors."""

from __future__ import annotations

from typing import Literal

import lightning as L
import torch
from typing_extensions import override

from datamodules.base.folds import Fold, Pool, fold_rows
from datamodules.base.tensor_batches import TensorBatches


class InMemoryDataModule(L.LightningDataModule):
    """Holds ``train``/``val``/``test`` tuples of tensors and serves them as :class:`TensorBatches`.

    With ``data_on_device`` the tensors move to the accelerator once, so a training step reads its
    batch straight from device memory (the GPU-resident-data trick of fast CIFAR recipes); on the
    CPU nothing moves. Subclasses fill ``self.train``/``self.val``/``self.test`` in ``setup``.

    ``predict`` serves ``predict_split`` with a third tensor, each sample's index in that split, so
    the prediction writer can put the rows back in order under DDP and name their source.
    """

    #: the splits ``--data.predict_split`` can name
    SPLITS = ("train", "val", "test")
    #: drop a short last training batch (data sets of any size: a batch of one breaks BatchNorm)
    drop_last_train = False

    def __init__(
        self,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        seed: int = 137,
        data_on_device: bool = True,
        predict_split: Literal["train", "val", "test"] = "test",
    ) -> None:
        super().__init__()
        if predict_split not in self.SPLITS:
            raise ValueError(f"--data.predict_split must be one of {', '.join(self.SPLITS)}, got {predict_split!r}")
        if batch_size < 1:
            raise ValueError(f"--data.batch_size must be >= 1, got {batch_size}")
        if eval_batch_size is not None and eval_batch_size < 1:
            raise ValueError(f"--data.eval_batch_size must be >= 1, got {eval_batch_size}")
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.seed = seed
        self.data_on_device = data_on_device
        self.predict_split = predict_split
        self.train: tuple[torch.Tensor, ...] | None = None
        self.val: tuple[torch.Tensor, ...] | None = None
        self.test: tuple[torch.Tensor, ...] | None = None
        #: a cross-validation run's fold (``use_fold``, before ``setup``); None: the module's own split
        self.fold: Fold | None = None
        #: with a fold: each split's source names in the pool (what ``predict`` names its rows by)
        self.fold_sources: dict[str, list[str]] = {}

    # -- cross-validation -----------------------------------------------------------------------

    def use_fold(self, fold: Fold) -> None:
        """Train on the pool without fold ``fold.fold`` and validate on it (``cv``), instead of the module's split.

        The fold's seed also seeds the shuffling and the augmentation, so two seeds are two independent runs.
        """
        if self.train is not None:
            raise RuntimeError("use_fold() must come before setup()")
        self.fold = fold

    def fold_pool(self, group_by: str | None = None) -> Pool:
        """The samples cross-validation folds are drawn from: the training and validation data, never the test.

        Raises:
            ValueError: this data module cannot be cross-validated, or ``group_by`` means nothing to it.
        """
        raise ValueError(f"{type(self).__name__} cannot be cross-validated: it describes no pool of samples")

    def split_pool(self, pool: Pool) -> dict[str, torch.Tensor]:
        """The pool's rows of this run's training and validation splits under :attr:`fold`."""
        assert self.fold is not None
        rows = fold_rows(pool, self.fold)
        self.fold_sources = {name: [pool.sources[i] for i in index.tolist()] for name, index in rows.items()}
        return rows

    def no_groups(self, group_by: str | None) -> None:
        """Refuse ``--group_by`` on data whose samples carry no groups.

        Raises:
            ValueError: ``group_by`` was given.
        """
        if group_by:
            raise ValueError(f"--group_by {group_by!r}: {type(self).__name__}'s samples have no groups; --group_by "
                             "is for a folder of images (a regex on the path) or a CSV (a column)")

    @property
    def shuffle_seed(self) -> int:
        """The seed of the shuffling and the augmentation: the module's, or a cross-validation run's."""
        return self.seed if self.fold is None else self.fold.seed

    def _distribution(self) -> tuple[int, int, torch.device]:
        trainer = self.trainer
        if trainer is None:
            return 0, 1, torch.device("cpu")
        return trainer.global_rank, trainer.world_size, trainer.strategy.root_device

    def batches(self, tensors: tuple[torch.Tensor, ...] | None, stage: str, train: bool) -> TensorBatches:
        """``tensors`` served as batches of this rank's share, on the device with ``data_on_device``.

        Raises:
            RuntimeError: ``tensors`` is None (the split was never set up).
        """
        if tensors is None:
            raise RuntimeError(f"{type(self).__name__} has no {stage} split; was setup() called?")
        rank, world_size, device = self._distribution()
        if self.data_on_device and device.type != "cpu":
            tensors = tuple(t.to(device) for t in tensors)
        return TensorBatches(
            *tensors,
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            drop_last=train and self.drop_last_train and len(tensors[0]) > self.batch_size,
            seed=self.shuffle_seed,
            rank=rank,
            world_size=world_size,
            pad_shards=train,
            sample_weights=self.train_sample_weights() if train else None,
        )

    def train_sample_weights(self) -> torch.Tensor | None:
        """Weights with which training draws its samples (None: each once per epoch, shuffled)."""
        return None

    @override
    def train_dataloader(self) -> TensorBatches:
        """The training batches; a stateful loader, so a fit resumed from a mid-epoch checkpoint (SLURM's
        preemption save) continues the epoch where it stopped (see :meth:`TensorBatches.load_state_dict`).
        """
        return self.batches(self.train, "train", train=True)

    @override
    def val_dataloader(self) -> TensorBatches:
        return self.batches(self.val, "validation", train=False)

    @override
    def test_dataloader(self) -> TensorBatches:
        return self.batches(self.test, "test", train=False)

    @override
    def predict_dataloader(self) -> TensorBatches:
        tensors = self.predict_tensors()
        return self.batches((*tensors, torch.arange(len(tensors[0]))), self.predict_source, train=False)

    def predict_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(inputs, targets)`` that ``predict`` runs on; targets are -1 where unknown."""
        tensors = getattr(self, self.predict_split)
        if tensors is None:
            raise RuntimeError(f"{type(self).__name__} has no {self.predict_split} split; was setup() called?")
        return tensors[0], tensors[1]

    @property
    def predict_source(self) -> str:
        """What ``predict`` runs on, for file names: the split's name (or a folder's, in subclasses)."""
        return self.predict_split

    @property
    def predict_names(self) -> list[str] | None:
        """A name per predicted sample (file names, a fold's pool indices), or None when known by their index."""
        return self.split_names(self.predict_split)

    def split_names(self, split: str) -> list[str] | None:
        """A name per sample of ``split`` in its loader's order (a cv run's pool indices; subclasses: file paths),
        or None when the samples are known by their index in the split.
        """
        return self.fold_sources.get(split)
