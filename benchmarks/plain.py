"""Plain PyTorch loops, written the way the reference recipes write them.

No handicaps: the same net, batch size, optimizer, dtype and thread count as the project's side,
data already in memory where the recipe has it there. What each loop includes is stated where it
is called (validation each epoch or not); none of them logs or checkpoints.

They run in the benchmark's process, after Lightning was imported. Lightning sets
``PYTORCH_NVML_BASED_CUDA_CHECK=1``, which on a machine without an NVIDIA driver makes every
``Adam.step`` load a library (0.1-0.2 ms); the project drops it there
(``experiments.runtime.fast_paths.drop_nvml_probe_without_driver``, applied when ``benchmarks.project`` is
imported), so these loops run as in a process that never imported Lightning.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.timing import sync
from lit_models.channels_last import to_channels_last


class PlainClock:
    def __init__(self) -> None:
        self.start = 0.0
        self.steps: list[float] = []
        self.epochs: list[float] = []
        self.val_history: list[float] = []


def train(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    train_batches: Callable[[], Iterable],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    epochs: int,
    device: torch.device,
    prepare: Callable[[torch.Tensor], torch.Tensor] = lambda x: x,
    val_batches: Callable[[], Iterable] | None = None,
    val_metric: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    max_steps: int | None = None,
    autocast: torch.dtype | None = None,
    channels_last: bool = False,
    after_validation: Callable[[nn.Module, float], None] | None = None,
) -> PlainClock:
    """The tutorial loop: for each epoch, train on every batch, then evaluate on the validation set.

    ``after_validation(net, value)`` runs after each evaluation: where a recipe keeps its
    best-by-validation weights, that is where it copies them.
    """
    clock = PlainClock()
    net.to(device)
    if channels_last:  # as the task does it (the layers oneDNN gets wrong in NHWC stay NCHW on the CPU)
        to_channels_last(net)
    sync()
    clock.start = time.perf_counter()
    steps = 0
    for _ in range(epochs):
        net.train()
        for x, y in train_batches():
            x, y = prepare(x.to(device, non_blocking=True)), y.to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
                loss = loss_fn(net(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            clock.steps.append(time.perf_counter())
            steps += 1
            if max_steps is not None and steps >= max_steps:
                sync()
                clock.epochs.append(time.perf_counter())
                return clock
        if val_batches is not None:
            net.eval()
            total, count = 0.0, 0
            with torch.no_grad():
                for x, y in val_batches():
                    x, y = prepare(x.to(device)), y.to(device)
                    total += val_metric(net(x), y).item() * len(y)
                    count += len(y)
            clock.val_history.append(total / count)
            if after_validation is not None:
                after_validation(net, clock.val_history[-1])
        sync()
        clock.epochs.append(time.perf_counter())
    return clock


def slices(x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool, generator: torch.Generator | None = None):
    """Batches as index slices of in-memory tensors: the fastest plain-PyTorch way to iterate."""
    def batches():
        order = torch.randperm(len(x), generator=generator) if shuffle else None
        for i in range(0, len(x), batch_size):
            if order is None:
                yield x[i:i + batch_size], y[i:i + batch_size]
            else:
                idx = order[i:i + batch_size].to(x.device)
                yield x[idx], y[idx]
    return batches


def mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(prediction, target)


def accuracy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (logits.argmax(1) == target).float().mean()
