"""Per-step costs of Lightning 2.6 that the experiments leave out, each one measured.

For the sin(1/x) MLP a training step takes ~0.9 ms on a 2-core CPU, and Lightning's own loop
around it (hooks, callbacks, profiler scopes) adds ~0.3 ms even with nothing attached. The pieces
below remove what can be removed without leaving Lightning's Trainer, its hooks or its callbacks;
figures are from ``python -m benchmarks sin_mlp`` and ``timeit`` on that machine. (A cached
``ModelCheckpoint.state_key`` was measured too: 2% per step, not worth depending on Lightning's
internals; see BENCHMARKS.md.)
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys

from lightning.pytorch.profilers import PassThroughProfiler
from typing_extensions import override

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

    @override
    def profile(self, action_name: str) -> contextlib.AbstractContextManager:
        return _NULL_CONTEXT
