"""Mixed precision chosen from the GPUs' compute capability through NVML, never by initialising CUDA: the
GPUs are faked on the CPU with a stand-in for pynvml.
"""

from __future__ import annotations

import sys
import types

import pytest
import torch

from experiments.cli.defaults import precision_on
from experiments.runtime.compute_capability import mixed_precision_for, visible_compute_capabilities


class FakeNVML(types.ModuleType):
    """pynvml's calls used here, over a list of (uuid, capability)."""

    class NVMLError(Exception):
        pass

    def __init__(self, gpus: list[tuple[str, tuple[int, int]]]) -> None:
        super().__init__("pynvml")
        self.gpus = gpus
        self.open = 0

    def nvmlInit(self):
        self.open += 1

    def nvmlShutdown(self):
        self.open -= 1

    def nvmlDeviceGetCount(self):
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index):
        if index >= len(self.gpus):
            raise self.NVMLError("invalid index")
        return index

    def nvmlDeviceGetHandleByUUID(self, uuid):
        return next(i for i, (u, _) in enumerate(self.gpus) if u == uuid)

    def nvmlDeviceGetCudaComputeCapability(self, handle):
        return self.gpus[handle][1]


@pytest.fixture
def gpus(monkeypatch):
    def install(*capabilities, visible=None):
        fake = FakeNVML([(f"GPU-{i}", c) for i, c in enumerate(capabilities)])
        monkeypatch.setitem(sys.modules, "pynvml", fake)
        if visible is None:
            monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        else:
            monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
        return fake

    # a GPU machine as torch sees it before CUDA is initialised; the calls that initialise it must not run
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)

    def initialises(*args, **kwargs):
        raise AssertionError("CUDA initialised to choose the precision")

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", initialises)
    monkeypatch.setattr(torch.cuda, "get_device_capability", initialises)
    monkeypatch.setattr(torch.cuda, "get_device_properties", initialises)
    return install


@pytest.mark.parametrize("capabilities, expected", [
    ([(7, 0)], "16-mixed"),  # V100: bf16 only emulated
    ([(7, 5)], "16-mixed"),  # T4
    ([(8, 0)], "bf16-mixed"),  # A100
    ([(9, 0), (9, 0)], "bf16-mixed"),  # H100s
    ([(9, 0), (7, 5)], "16-mixed"),  # mixed machine: what every GPU runs
])
def test_precision_follows_the_compute_capability(gpus, capabilities, expected):
    fake = gpus(*capabilities)
    assert precision_on("auto") == expected and precision_on("gpu") == expected
    assert precision_on("cpu") is None
    assert fake.open == 0  # NVML shut down again


def test_visible_devices_by_index_and_uuid_pick_the_gpus_asked_for(gpus):
    gpus((7, 5), (9, 0), (8, 6), visible="1,2")
    assert visible_compute_capabilities() == [(9, 0), (8, 6)]
    assert precision_on(None) == "bf16-mixed"
    gpus((7, 5), (9, 0), visible="GPU-1")
    assert visible_compute_capabilities() == [(9, 0)]
    gpus((7, 5), (9, 0), visible="1,junk,0")  # CUDA ignores everything from the first bad entry
    assert visible_compute_capabilities() == [(9, 0)]
    gpus((9, 0), visible="MIG-5a1f")
    assert visible_compute_capabilities() is None and precision_on("auto") == "16-mixed"


def test_unknown_capability_gets_the_precision_every_gpu_runs(gpus, monkeypatch):
    fake = gpus((9, 0))

    def no_driver():
        raise fake.NVMLError("driver not loaded")

    fake.nvmlInit = no_driver
    assert visible_compute_capabilities() is None and mixed_precision_for(None) == "16-mixed"
    assert precision_on("auto") == "16-mixed"
