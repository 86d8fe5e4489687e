"""Per-step costs of Lightning 2.6 that the experiments leave out, each one measured.

For the sin(1/x) MLP a training step takes ~0.9 ms on a 2-core CPU, and Lightning's own loop
around it (hooks, callbacks, profiler scopes) adds ~0.3 ms even with nothing attached. The pieces
below remove what can be removed without leaving Lightning's Trainer, its hooks or its callbacks;
figures are from ``python -m benchmarks sin_mlp`` and ``timeit`` on that machine.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from typing import Any

from lightning.pytorch import callbacks
from lightning.pytorch.profilers import PassThroughProfiler

NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"
_NULL_CONTEXT = contextlib.nullcontext()


def drop_nvml_probe_without_driver() -> None:
    """Undo ``import lightning``'s ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` where there is no NVIDIA driver.

    Lightning sets it so that asking whether CUDA is available does not initialise CUDA before DDP
    forks its workers. But ``Adam.step`` asks ``torch.accelerator.is_available()`` at every step,
    and with the variable set on a machine without the driver, torch loads ``libnvidia-ml`` with
    ctypes each time (the answer is not cached while CUDA is uninitialised): 0.1-0.2 ms per step
    that plain PyTorch does not pay. Without the driver there is no CUDA to protect.
    """
    if os.environ.get(NVML_CHECK) != "1" or sys.platform == "win32":
        return
    try:
        ctypes.CDLL("libnvidia-ml.so.1")  # the library torch's NVML check loads
    except OSError:
        os.environ.pop(NVML_CHECK)


class NoOpProfiler(PassThroughProfiler):
    """Lightning's default when no profiler is asked for, without the per-scope generator.

    ``PassThroughProfiler.profile`` is a ``@contextmanager`` generator entered around every hook,
    about 60 times per training step; handing back one shared null context instead took
    ``_call_callback_hooks`` with five callbacks from 12.3 to 7.4 us per hook.
    """

    def profile(self, action_name: str) -> contextlib.AbstractContextManager:
        return _NULL_CONTEXT


class ModelCheckpoint(callbacks.ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` with its state key computed once.

    Lightning formats every callback's ``state_key`` at every hook call to name the profiler scope;
    for ``ModelCheckpoint`` that is the ``repr`` of five settings (1.2 us), ~8 times per step for
    each checkpoint callback. The settings are fixed at construction, so the key is too. The class
    keeps Lightning's name, so the key (``ModelCheckpoint{...}``) and checkpoints stay compatible.
    """

    @property
    def state_key(self) -> str:
        key = self.__dict__.get("_cached_state_key")
        if key is None:
            key = self.__dict__["_cached_state_key"] = super().state_key
        return key

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name in {"monitor", "mode", "_every_n_train_steps", "_every_n_epochs", "_train_time_interval"}:
            self.__dict__.pop("_cached_state_key", None)  # a setting of the key changed
