"""One value from every rank, for state that each rank keeps for itself (random generators, predictions)."""

from __future__ import annotations

import pickle
from typing import Any

import torch
from lightning.pytorch.strategies import Strategy


def gather_from_ranks(value: Any, strategy: Strategy | None) -> list[Any]:
    """``[value of rank 0, value of rank 1, ...]``; a collective call under DDP, so every rank makes it.

    Goes through the strategy's own ``all_gather`` (as Lightning's callbacks do), so it follows whatever
    process group and device the strategy runs on: the value is pickled into a uint8 tensor, the lengths
    gathered, then the payloads padded to the longest. Values are this run's own ranks' state.
    """
    world_size = getattr(strategy, "world_size", 1)
    if strategy is None or world_size == 1:
        return [value]
    device = strategy.root_device
    payload = torch.frombuffer(bytearray(pickle.dumps(value)), dtype=torch.uint8)
    sizes = strategy.all_gather(torch.tensor([payload.numel()], device=device)).reshape(-1).tolist()
    padded = torch.zeros(max(sizes), dtype=torch.uint8, device=device)
    padded[: payload.numel()] = payload.to(device)
    stacked = strategy.all_gather(padded).reshape(world_size, -1).cpu()
    return [pickle.loads(stacked[rank, :size].numpy().tobytes()) for rank, size in enumerate(sizes)]
