"""Batches sliced from tensors already in memory, in place of ``DataLoader`` for small data sets.

A ``DataLoader`` calls ``__getitem__`` once per sample and collates the results in Python; for a
64-sample batch of a tiny net that costs more than the step itself (see BENCHMARKS.md). Here a
batch is one indexing operation on whole tensors. The order is a function of (seed, epoch), so a
resumed run sees the same batches as an uninterrupted one, and under DDP each rank takes a disjoint
shard of every epoch, as ``DistributedSampler`` would: training shards are padded by wrapping so all
ranks step alike; evaluation shards are not padded, so every sample is counted exactly once. With
``sample_weights`` an epoch draws its samples with replacement in proportion to them (a balanced sampler,
as ``WeightedRandomSampler``), still a function of (seed, epoch).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch


class TensorBatches:
    """An iterable of batches ``(t0[idx], t1[idx], ...)`` over tensors of equal length."""

    def __init__(
        self,
        *tensors: torch.Tensor,
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        pad_shards: bool = True,
        sample_weights: torch.Tensor | None = None,
    ) -> None:
        if not tensors or any(len(t) != len(tensors[0]) for t in tensors):
            raise ValueError("TensorBatches needs tensors of equal length")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        self.tensors = tensors
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.pad_shards = pad_shards
        #: with shuffle: an epoch draws its n samples with replacement in proportion to these (balanced classes)
        self.sample_weights = sample_weights
        self.epoch = 0
        #: batches the next iteration leaves out at its start (once): a run resumed mid-epoch has done them
        self.skip_batches = 0
        #: batches of the current epoch that the training loop finished (counted by :meth:`count_trained`)
        self.trained = 0
        self._counted = False
        # Lightning calls ``set_epoch`` on a loader's ``sampler`` at the start of every epoch.
        self.sampler = self
        self.batch_sampler = None

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose order (and, with sample weights, draws) the next iteration follows."""
        self.epoch = epoch

    # -- exact mid-epoch resume (Lightning saves and restores a training loader's own state) ------

    def count_trained(self) -> None:
        """One more batch of this epoch finished training.

        Called after each training step (``experiments.callbacks.LoaderPosition``): the loader cannot
        count it itself, because Lightning fetches a batch ahead of the step it trains.
        """
        self.trained += 1
        self._counted = True

    def state_dict(self) -> dict[str, int]:
        """The epoch and how many of its batches were trained; empty when nothing counted them (then a
        resumed run starts the epoch over, as with any loader).
        """
        return {"epoch": self.epoch, "trained": self.trained} if self._counted else {}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        """Leave out, once, the batches a checkpoint taken mid-epoch had already trained. The order of an
        epoch is a function of (seed, epoch), so the rest of it is exactly what would have come next.
        """
        trained = int(state_dict.get("trained", 0))
        total = len(self)
        self.skip_batches = trained if 0 < trained < total else 0
        self.trained = self.skip_batches
        if "epoch" in state_dict:
            self.epoch = int(state_dict["epoch"])

    @property
    def num_samples(self) -> int:
        """Samples this rank sees per epoch."""
        n = len(self.tensors[0])
        if self.pad_shards:
            return -(-n // self.world_size)
        return len(range(self.rank, n, self.world_size))

    def __len__(self) -> int:
        n = self.num_samples
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def indices(self) -> torch.Tensor | None:
        """This rank's sample order for the current epoch; ``None`` means 0..n-1 in order."""
        n = len(self.tensors[0])
        if not self.shuffle and self.world_size == 1:
            return None
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            if self.sample_weights is not None:
                order = torch.multinomial(self.sample_weights.cpu().double(), n, replacement=True, generator=generator)
            else:
                order = torch.randperm(n, generator=generator)
        else:
            order = torch.arange(n)
        total = self.num_samples * self.world_size
        if self.pad_shards and total > n:  # pad by wrapping around, as DistributedSampler does
            order = torch.cat([order, order[: total - n]])
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        first, self.skip_batches = self.skip_batches, 0
        self.trained = first
        order = self.indices()
        device = self.tensors[0].device
        if order is not None and order.device != device:
            order = order.to(device, non_blocking=True)
        for i in range(first, len(self)):
            start, stop = i * self.batch_size, (i + 1) * self.batch_size
            if order is None:  # contiguous slices are views: no copy at all
                yield tuple(t[start:stop] for t in self.tensors)
            else:
                idx = order[start:stop]
                yield tuple(gather_rows(t, idx) for t in self.tensors)


def gather_rows(tensor: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``tensor[index]`` by whole rows, in the tensor's own layout.

    ``index_select``, not ``tensor[index]``: rows copied whole, measured 2.1 ms against 9.4 ms for 64 images of
    3x256x256 from a memory-mapped cache on a 2-core CPU (1.3 ms against 4.3 ms in memory). A channels-last
    batch (the folder cache) is gathered as the (N, H, W, C) rows it is in memory: ``index_select`` on the
    (N, C, H, W) view would hand back a channels-first copy, 8x slower to make and slower to crop.
    """
    if tensor.dim() == 4 and not tensor.is_contiguous() and tensor.is_contiguous(memory_format=torch.channels_last):
        return tensor.permute(0, 2, 3, 1).index_select(0, index).permute(0, 3, 1, 2)
    return tensor.index_select(0, index)
