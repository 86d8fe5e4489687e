"""Which mixed precision a CUDA machine gets, read from its GPUs' compute capability through NVML.

NVML (NVIDIA's management library, ``pynvml``) answers without creating a CUDA context. Asking torch
instead (``torch.cuda.is_bf16_supported()``, ``get_device_capability()``) initialises CUDA in the launching
process, after which fork-based strategies (``ddp_fork``, ``ddp_notebook``) cannot start, and
``is_bf16_supported()`` also says yes on GPUs that only emulate bf16 (a V100 or a T4 would get bf16 without
the tensor cores for it).
"""

from __future__ import annotations

import os

BF16_FROM = (8, 0)  # Ampere: the first generation whose tensor cores compute in bf16


def visible_compute_capabilities() -> list[tuple[int, int]] | None:
    """``(major, minor)`` of every GPU this process may use (``CUDA_VISIBLE_DEVICES`` honoured, by index or
    UUID), or None when NVML cannot tell (no driver, no pynvml, MIG slices).
    """
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None
    try:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible is None:
            handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        else:
            handles = []
            for entry in (e.strip() for e in visible.split(",")):
                if entry.isdigit():
                    handles.append(pynvml.nvmlDeviceGetHandleByIndex(int(entry)))
                elif entry.startswith("GPU-"):
                    handles.append(pynvml.nvmlDeviceGetHandleByUUID(entry))
                elif entry.startswith("MIG-"):  # a slice of a GPU: not answered here
                    return None
                else:  # CUDA ignores the list from the first entry it cannot parse
                    break
        return _capabilities(handles)
    except pynvml.NVMLError:
        return None
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass


def _capabilities(handles: list) -> list[tuple[int, int]]:
    import pynvml

    return [tuple(int(v) for v in pynvml.nvmlDeviceGetCudaComputeCapability(h)) for h in handles]


def mixed_precision_for(capabilities: list[tuple[int, int]] | None) -> str:
    """bf16-mixed when every visible GPU computes bf16 in hardware (compute capability 8.0 or newer),
    else 16-mixed (fp16 with loss scaling, which every CUDA GPU runs); 16-mixed when unknown.
    """
    if capabilities and min(capabilities) >= BF16_FROM:
        return "bf16-mixed"
    return "16-mixed"
