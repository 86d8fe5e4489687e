"""CIFAR-10: data module on pickles in torchvision's format, device augmentation, nets, experiments."""

from __future__ import annotations

import pytest
import torch

from datamodules import CIFAR10DataModule
from datamodules.bundled.synthetic import write_cifar10
from datamodules.images.augment import crop_flip, random_crop
from lit_models.nets import CifarCNN, CifarResNet, resnet18
from tests.helpers import EXPERIMENTS, event_data, run_cli


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar") / "data"
    write_cifar10(root, per_batch=200, n_test=300)
    return root


def datamodule(cifar_dir, **kwargs) -> CIFAR10DataModule:
    return CIFAR10DataModule(data_dir=str(cifar_dir), download=False, verify_integrity=False, val_size=100, **kwargs)


def test_split_sizes_dtypes_and_layout(cifar_dir):
    dm = datamodule(cifar_dir)
    dm.setup()
    (xt, yt), (xv, yv), (xs, _) = dm.train, dm.val, dm.test
    assert (len(xt), len(xv), len(xs)) == (900, 100, 300)
    assert xt.dtype == torch.uint8 and xt.shape[1:] == (3, 32, 32) and yt.dtype == torch.int64
    # the recipe's split: randperm(n) with the seed, validation first
    perm = torch.randperm(1000, generator=torch.Generator().manual_seed(42))
    assert torch.equal(dm._val_idx, perm[:100])
    again = datamodule(cifar_dir)
    again.setup()
    assert torch.equal(again.val[0], xv) and torch.equal(again.val[1], yv)


def test_files_read_exactly_as_torchvision_reads_them(cifar_dir):
    """The module's own reader of the published format against ``torchvision.datasets.CIFAR10``."""
    from torchvision import datasets

    from datamodules.bundled import cifar10_files
    from datamodules.images.pil_images import PILImages

    class Unchecked(datasets.CIFAR10):  # the test's reference only: synthetic files have other md5 sums
        def _check_integrity(self):
            return True

        def _load_meta(self):
            self.classes = []

    for train in (True, False):
        reference = Unchecked(str(cifar_dir), train=train)
        images, labels = cifar10_files.read_split(cifar_dir / cifar10_files.FOLDER, train)
        assert torch.equal(images, torch.from_numpy(reference.data).permute(0, 3, 1, 2))
        assert labels.tolist() == reference.targets
        ours, theirs = PILImages(images, labels)[7], reference[7]
        assert ours[1] == theirs[1] and ours[0].mode == theirs[0].mode == "RGB"
        assert ours[0].tobytes() == theirs[0].tobytes()
    assert cifar10_files.read_class_names(cifar_dir / cifar10_files.FOLDER)[0] == "airplane"


def test_integrity_is_checked_for_real_files(cifar_dir, tmp_path):
    # our synthetic files are not torchvision's: with the check on they are rejected, by name
    dm = CIFAR10DataModule(data_dir=str(cifar_dir), download=False)
    with pytest.raises(ValueError, match=r"data_batch_1 is corrupt \(md5 differs.*--data.download true.*"
                                         r"--data.verify_integrity false if you made these files yourself"):
        dm.setup()


def test_corrupted_file_is_rejected_with_a_clear_message(tmp_path):
    folder = write_cifar10(tmp_path, per_batch=20, n_test=20)
    (folder / "data_batch_3").write_bytes((folder / "data_batch_3").read_bytes()[:100])
    dm = CIFAR10DataModule(data_dir=str(tmp_path), download=False, verify_integrity=False, val_size=10)
    with pytest.raises(ValueError, match=r"cannot be read .*delete them and run again with --data.download true"):
        dm.setup()
    (folder / "test_batch").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing test_batch.*--data.download true"):
        dm.setup()


def test_device_augmentation_per_sample_and_deterministic():
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    out = crop_flip(x, 4, True, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.uint8
    same = crop_flip(x, 4, True, torch.Generator().manual_seed(0))
    assert torch.equal(out, same)
    assert not torch.equal(out, crop_flip(x, 4, True, torch.Generator().manual_seed(1)))
    # every output image is a crop of its own input (order untouched), and the crops differ
    offsets = set()
    for i in range(64):
        padded = torch.nn.functional.pad(x[i], (4, 4, 4, 4))
        found = [(dy, dx, f) for dy in range(9) for dx in range(9) for f in (False, True)
                 if torch.equal(padded[:, dy:dy + 32, dx:dx + 32].flip(2) if f else padded[:, dy:dy + 32, dx:dx + 32],
                                out[i])]
        assert found, i
        offsets.add(found[0])
    assert len(offsets) > 20
    assert {f for _, _, f in offsets} == {False, True}


def test_augmentation_identity_when_disabled(cifar_dir):
    x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    assert torch.equal(random_crop(x, 0), x)
    assert torch.equal(crop_flip(x, 0, False), x)
    dm = datamodule(cifar_dir, augment=False)
    torch.testing.assert_close(dm.to_float(x, train=True), dm.to_float(x, train=False))
    dm = datamodule(cifar_dir, image_size=64)
    assert dm.to_float(x, train=True).shape == (8, 3, 64, 64) and dm.image_shape == (3, 64, 64)


def test_torchvision_pipeline_gives_the_same_eval_batches(cifar_dir):
    device_dm, tv_dm = datamodule(cifar_dir, augment=False), datamodule(cifar_dir, pipeline="torchvision",
                                                                          num_workers=0, augment=False)
    device_dm.setup()
    tv_dm.setup()
    x_tv, y_tv = next(iter(tv_dm.val_dataloader()))
    x_dev, y_dev = next(iter(device_dm.val_dataloader()))
    x_dev = device_dm.to_float(x_dev, train=False)
    assert torch.equal(y_tv, y_dev)
    torch.testing.assert_close(x_tv, x_dev, atol=1e-5, rtol=0)


def test_resnet18_shapes_and_parameter_count():
    net = resnet18()
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert sum(p.numel() for p in net.parameters()) == 11_173_962
    assert len(CifarResNet(blocks_per_stage=[3, 4, 6, 3]).stages[2]) == 6  # ResNet-34 by config
    cnn = CifarCNN()
    assert cnn(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert cnn.classifier[1].in_features == 4096
    with pytest.raises(ValueError, match="block_dropout has 2 values for 3 blocks"):
        CifarCNN(block_dropout=[0.1, 0.2])


@pytest.mark.slow
@pytest.mark.parametrize("experiment, extra", [
    ("cifar10_cnn", []),
    ("cifar10_resnet18", ["--model.init_args.net.init_args.widths", "[16, 32, 64, 128]",
                          "--model.init_args.optimizer.init_args.lr", "0.05",
                          "--model.init_args.lr_scheduler.init_args.max_lr", "0.05"]),
])
def test_experiment_fit_then_test_learns(experiment, extra, cifar_dir, tmp_path):
    common = ["--data.init_args.data_dir", str(cifar_dir), "--data.init_args.download", "false",
              "--data.init_args.verify_integrity", "false", "--data.init_args.val_size", "100",
              "--data.init_args.batch_size", "32", "--trainer.log_every_n_steps", "5"]
    config = str(EXPERIMENTS / f"{experiment}.yaml")
    run_cli("fit", "-c", config, "--trainer.max_epochs", "4", *common, *extra, cwd=tmp_path)
    run_cli("test", "-c", config, "--ckpt_path", "best", *common, *extra, cwd=tmp_path)
    run_dir = tmp_path / "lightning_logs" / experiment / "version_0"
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    scalars, images = event_data(run_dir)
    accuracy = scalars["test/acc"][-1][1]
    assert accuracy >= 0.3, accuracy  # chance is 0.1
    assert "val/confusion_matrix" in images and "train/loss" in scalars


def test_crop_keeps_the_plain_layout_even_with_one_channel():
    # channels-last strides on a one-channel batch pass is_contiguous() yet send CPU convs down a slow path
    for shape in ((16, 1, 28, 28), (16, 3, 32, 32)):
        x = torch.arange(torch.Size(shape).numel(), dtype=torch.int64).remainder(251).to(torch.uint8).view(shape)
        out = random_crop(x, 2, torch.Generator().manual_seed(0))
        assert out.shape == x.shape and out.stride() == x.stride()
