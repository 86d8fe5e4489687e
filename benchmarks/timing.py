"""Timestamps from both sides of a comparison, and the rows that report them."""

from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import dataclass, field

import lightning as L
import torch


class StepClock(L.Callback):
    """Records a timestamp after every training step and every training epoch (validation included)."""

    def __init__(self) -> None:
        self.steps: list[float] = []
        self.step_epochs: list[int] = []
        self.epochs: list[float] = []
        self.start = 0.0

    def on_train_start(self, trainer, pl_module) -> None:
        sync()
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps.append(time.perf_counter())
        self.step_epochs.append(trainer.current_epoch)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        sync()
        self.epochs.append(time.perf_counter())


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def median_epoch_seconds(start: float, epoch_ends: list[float], skip: int = 1) -> float:
    """Median epoch duration, leaving out the first ``skip`` epochs (warm-up, compilation)."""
    bounds = [start, *epoch_ends]
    durations = [b - a for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    return statistics.median(durations[skip:] if len(durations) > skip else durations)


def steady_rate(step_ends: list[float], batch_size: int, skip: int, step_epochs: list[int] | None = None) -> float:
    """Training samples per second over step intervals, leaving out the first ``skip`` steps
    (warm-up), every interval that spans an epoch boundary (validation, checkpoints) and intervals
    over 10x the median (a torch.compile recompilation, e.g. for an epoch's smaller last batch).
    """
    if len(step_ends) <= skip + 1:
        raise ValueError(f"need more than {skip + 1} steps to time, got {len(step_ends)}")
    epochs = step_epochs or [0] * len(step_ends)
    intervals = [step_ends[i] - step_ends[i - 1] for i in range(skip + 1, len(step_ends))
                 if epochs[i] == epochs[i - 1]]
    limit = 10 * statistics.median(intervals)
    kept = [d for d in intervals if d <= limit]
    return len(kept) * batch_size / sum(kept)


def within_epoch_rate(clock, batch_size: int) -> float:
    """Samples/s of the training steps alone: step intervals inside an epoch, the first epoch left
    out (warm-up), so validation, checkpoints and epoch-boundary hooks are not counted.
    """
    import bisect

    epoch_of = [bisect.bisect_left(clock.epochs, t) for t in clock.steps]
    skip = epoch_of.index(1) if 1 in epoch_of else 1
    return steady_rate(clock.steps, batch_size, skip, epoch_of)


@dataclass
class Row:
    benchmark: str
    side: str
    batch_size: int
    samples_per_s: float
    ratio: float | None = None
    seconds: float | None = None
    peak_mem_mb: float | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)

    def markdown(self) -> str:
        ratio = f"{self.ratio:.2f}x" if self.ratio is not None else ""
        secs = f"{self.seconds:.2f}" if self.seconds is not None else ""
        mem = f"{self.peak_mem_mb:.0f}" if self.peak_mem_mb is not None else ""
        rate = f"{self.samples_per_s:,.0f}" if self.samples_per_s > 0 else "—"
        return (f"| {self.benchmark} | {self.side} | {self.batch_size} | {rate} | {ratio} "
                f"| {secs} | {mem} | {self.note} |")


HEADER = ("| benchmark | side | batch | samples/s (median) | vs baseline | seconds | peak GPU MB | note |\n"
          "|---|---|---|---|---|---|---|---|")


def peak_memory_mb() -> float | None:
    if not torch.cuda.is_available():
        return None
    return torch.cuda.max_memory_allocated() / 2**20


def reset_peak_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}; {gpu}; "
            f"torch {torch.__version__}, lightning {L.__version__}, Python {platform.python_version()}")
