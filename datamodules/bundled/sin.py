"""The sin(1/x) regression data, drawn exactly as the recipe draws it."""

from __future__ import annotations

from typing import Literal

import torch
from typing_extensions import override

from datamodules.base.folds import Pool
from datamodules.base.in_memory import InMemoryDataModule


def sample_sin_inverse(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """X = u^4 + 0.05 with u ~ U[0, 1) (dense near 0.05, where sin(1/x) oscillates fastest)."""
    u = torch.rand(n, 1, generator=generator)
    x = u.pow(4) + 0.05
    return x, torch.sin(1.0 / x)


class SinDataModule(InMemoryDataModule):
    """2,000 train / 2,000 validation points (and a test split), one generator seeded with ``seed``.

    The splits are consecutive draws from that generator, so they are disjoint samples of the same
    distribution and identical for a given seed on every machine.

    Args:
        train_size: training points.
        val_size: validation points.
        test_size: test points.
        batch_size: training batch size.
        eval_batch_size: batch size of validation, test and predict (default: batch_size).
        seed: seed of the points and of the shuffling.
        data_on_device: keep the whole data set on the accelerator (no per-batch copies).
        predict_split: the split predict runs on (train, val or test).
    """

    def __init__(
        self,
        train_size: int = 2000,
        val_size: int = 2000,
        test_size: int = 2000,
        batch_size: int = 64,
        eval_batch_size: int | None = 2000,
        seed: int = 137,
        data_on_device: bool = True,
        predict_split: Literal["train", "val", "test"] = "test",
    ) -> None:
        super().__init__(batch_size=batch_size, eval_batch_size=eval_batch_size, seed=seed,
                         data_on_device=data_on_device, predict_split=predict_split)
        for name, size in (("train_size", train_size), ("val_size", val_size), ("test_size", test_size)):
            if size < 1:
                raise ValueError(f"--data.{name} must be >= 1, got {size}")
        self.train_size = train_size
        self.val_size = val_size
        self.test_size = test_size

    @override
    def setup(self, stage: str | None = None) -> None:
        if self.train is not None:
            return
        generator = torch.Generator().manual_seed(self.seed)
        self.train = sample_sin_inverse(self.train_size, generator)
        self.val = sample_sin_inverse(self.val_size, generator)
        self.test = sample_sin_inverse(self.test_size, generator)
        if self.fold is not None:  # the pool: the training points, then the validation points
            x, y = (torch.cat(pair) for pair in zip(self.train, self.val, strict=True))
            parts = self.split_pool(self.fold_pool())
            self.train, self.val = (x[parts["train"]], y[parts["train"]]), (x[parts["val"]], y[parts["val"]])

    @override
    def fold_pool(self, group_by: str | None = None) -> Pool:
        """The training and validation points (the data seed draws them; a cv's seeds draw the folds), by index:
        a regression, so the folds are not stratified.
        """
        self.no_groups(group_by)
        return Pool([str(i) for i in range(self.train_size + self.val_size)])
