"""One value from every rank, for state that each rank keeps for itself (random generators)."""

from __future__ import annotations

from typing import Any

import torch.distributed as dist


def gather_from_ranks(value: Any, world_size: int) -> list[Any]:
    """``[value of rank 0, value of rank 1, ...]``; a collective call under DDP, so every rank makes it.

    Used while a checkpoint is assembled, which Lightning does on every rank before rank zero writes.
    """
    if world_size == 1 or not (dist.is_available() and dist.is_initialized()):
        return [value]
    gathered: list[Any] = [None] * world_size
    dist.all_gather_object(gathered, value)
    return gathered
