"""The GPU fast path: mixed precision by default, channels_last, data resident on the device, and the
CUDA augmentation generator's state. Skipped without CUDA (run with `pytest -m gpu` on a GPU machine).
"""

from __future__ import annotations

import lightning as L
import pytest
import torch

from datamodules import CIFAR10DataModule
from datamodules.images.augment import crop_flip
from experiments.cli import ExperimentCLI
from tests.helpers import EXPERIMENTS, synthetic_cifar_args

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    return synthetic_cifar_args(tmp_path_factory.mktemp("cifar") / "data", per_batch=40, batch_size=32)


def _cli(tmp_path, cifar, *args):
    return ExperimentCLI(args=["-c", str(EXPERIMENTS / "cifar10_resnet18.yaml"), *cifar,
                               "--model.init_args.net.init_args.widths", "[8, 16, 32, 64]",
                               "--trainer.default_root_dir", str(tmp_path), *args], run=False)


def test_mixed_precision_is_the_default_on_a_gpu_and_the_user_can_turn_it_off(tmp_path, cifar):
    expected = "bf16-mixed" if torch.cuda.get_device_capability() >= (8, 0) else "16-mixed"
    assert _cli(tmp_path, cifar).trainer.precision == expected
    assert _cli(tmp_path, cifar, "--trainer.precision", "32-true").trainer.precision == "32-true"


class _Where(L.Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batch_device = batch[0].device
        self.batch_dtype = batch[0].dtype
        self.loader_device = trainer.train_dataloader.tensors[0].device


def test_channels_last_weights_and_data_resident_on_the_device(tmp_path, cifar):
    cli = _cli(tmp_path, cifar, "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1")
    where = _Where()
    cli.trainer.callbacks.append(where)
    cli.trainer.fit(cli.model, cli.datamodule)
    assert where.loader_device.type == "cuda"  # the whole split lives on the GPU, as uint8
    assert where.batch_device.type == "cuda" and where.batch_dtype == torch.float32  # normalised on the device
    convs = [m.weight for m in cli.model.net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)


def test_cuda_augmentation_generator_state_round_trips(cifar):
    device = torch.device("cuda")
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, device=device)
    saving = CIFAR10DataModule(download=False)
    crop_flip(x, 4, True, saving._device_generator(device))  # move the stream on
    state = saving.state_dict()
    assert state["augment_generators"][0].numel() > 0
    expected = crop_flip(x, 4, True, saving._device_generator(device))
    resumed = CIFAR10DataModule(download=False)
    resumed.load_state_dict(state)
    assert torch.equal(crop_flip(x, 4, True, resumed._device_generator(device)), expected)
