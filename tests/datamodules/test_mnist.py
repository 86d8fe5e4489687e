"""MNIST data module, classifier task and both MNIST experiments end to end on IDX files."""

from __future__ import annotations

import pytest
import torch

from datamodules import MNISTDataModule
from datamodules.bundled.synthetic import write_mnist
from lit_models import ImageClassifier
from lit_models.classifier import check_net_fits_data
from lit_models.nets import Feedforward, LeNet5
from tests.helpers import EXPERIMENTS, event_data, image_steps, run_cli


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("mnist")
    write_mnist(root / "data", n_train=1000, n_test=300)
    write_mnist(root / "data", n_train=1000, n_test=300, name="FashionMNIST", seed=1)
    return root


def test_sizes_dtypes_and_device_transform(mnist_dir):
    dm = MNISTDataModule(data_dir=str(mnist_dir / "data"), download=False, val_size=0.2, pad=2)
    dm.setup()
    (xt, yt), (xv, _), (xs, _) = dm.train, dm.val, dm.test
    assert (len(xt), len(xv), len(xs)) == (800, 200, 300)
    assert xt.dtype == torch.uint8 and xt.shape[1:] == (28, 28) and yt.dtype == torch.int64
    assert dm.num_classes == 10 and dm.image_shape == (1, 32, 32)
    x, y = dm.on_after_batch_transfer((xt[:8], yt[:8]), 0)
    assert x.shape == (8, 1, 32, 32) and x.dtype == torch.float32 and torch.equal(y, yt[:8])
    expected = (xt[:8].float() / 255 - 0.1307) / 0.3081
    torch.testing.assert_close(x[:, 0, 2:-2, 2:-2], expected)
    torch.testing.assert_close(x[:, 0, 0, 0], torch.full((8,), -0.1307 / 0.3081))  # black border
    torch.testing.assert_close(dm.denormalize(x)[:, :, 2:-2, 2:-2], xt[:8].float().unsqueeze(1) / 255)


def test_split_is_stratified_and_fixed_by_the_seed(mnist_dir):
    def split(seed):
        dm = MNISTDataModule(data_dir=str(mnist_dir / "data"), download=False, val_size=100, seed=seed)
        dm.setup()
        return dm

    a, b, c = split(1), split(1), split(2)
    assert torch.equal(a.val[0], b.val[0]) and not torch.equal(a.val[0], c.val[0])
    counts, val_counts = torch.bincount(a.train[1], minlength=10) + torch.bincount(a.val[1], minlength=10), \
        torch.bincount(a.val[1], minlength=10)
    assert ((val_counts - counts.float() / 10).abs() <= 1).all()  # every class gives its 10%, +-1
    assert len(a.train[1]) + len(a.val[1]) == 1000


def test_dataset_option_and_bad_values(mnist_dir):
    dm = MNISTDataModule(dataset="FashionMNIST", data_dir=str(mnist_dir / "data"), download=False)
    dm.setup()
    assert dm.class_names[0] == "T-shirt/top" and dm.mean == (0.2860,)
    with pytest.raises(ValueError, match=r"--data.val_size=1000 leaves no training"):
        MNISTDataModule(data_dir=str(mnist_dir / "data"), download=False, val_size=1000).setup()


def test_missing_folder_names_folder_and_option(tmp_path):
    dm = MNISTDataModule(data_dir=str(tmp_path / "empty"), download=False)
    dm.prepare_data()  # download off: nothing to do
    with pytest.raises(FileNotFoundError) as err:
        dm.setup()
    message = str(err.value)
    assert str(tmp_path / "empty" / "MNIST" / "raw") in message and "--data.download true" in message


def test_truncated_file_is_named(tmp_path):
    raw = write_mnist(tmp_path, n_train=100, n_test=50)
    data = (raw / "train-images-idx3-ubyte").read_bytes()
    (raw / "train-images-idx3-ubyte").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.*truncated or corrupt.*--data.download true"):
        MNISTDataModule(data_dir=str(tmp_path), download=False).setup()


class _FixedLogits(torch.nn.Module):
    """A 'net' whose logits are its input's first three pixels: the task's arithmetic, made visible."""

    def forward(self, x):
        return x.flatten(1)[:, :3]


def _classifier(**kwargs) -> ImageClassifier:
    task = ImageClassifier(net=_FixedLogits(), figure_every_n_epochs=0, **kwargs)
    task.num_classes = 3
    task.build_metrics()
    return task


def test_evaluation_of_a_hand_made_batch():
    # logits (as images 1x1x3), true classes: two right, one wrong with a confident mistake
    logits = torch.tensor([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 4.0], [4.0, 0.0, 0.0]])
    y = torch.tensor([0, 1, 2, 1])
    task = _classifier(label_smoothing=0.1)
    task._evaluate((logits.view(4, 1, 1, 3), y), task.val_loss, task.val_acc, task.val_confusion)
    assert task.val_acc.compute().item() == pytest.approx(0.75)
    # evaluation loss: plain cross-entropy (label smoothing is a training device only)
    p_true = torch.softmax(logits, 1)[torch.arange(4), y]
    assert task.val_loss.compute().item() == pytest.approx(-p_true.log().mean().item(), rel=1e-6)
    assert task.val_confusion.compute()[1, 0] == 1  # the true 1 predicted as 0
    # training loss with label smoothing 0.1 over 3 classes: targets 0.9333 / 0.0333 / 0.0333
    smooth = torch.full((4, 3), 0.1 / 3)
    smooth[torch.arange(4), y] += 0.9
    expected = -(smooth * torch.log_softmax(logits, 1)).sum(1).mean()
    task.log_train_loss = lambda loss, batch_idx: None  # no trainer here
    loss = task.training_step((logits.view(4, 1, 1, 3), y), 0)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_flip_test_time_augmentation_averages_the_mirror():
    images = torch.tensor([[[[3.0, 0.0, 1.0]]]])  # mirrored: [1, 0, 3]
    assert torch.equal(_classifier()._logits(images), images.view(1, 3))
    assert torch.equal(_classifier(tta_flip=True)._logits(images), torch.tensor([[2.0, 0.0, 2.0]]))


def test_misclassified_figure_keeps_at_most_max_images():
    task = _classifier(max_misclassified=32)
    task.figures_due = lambda: True
    wrong = torch.tensor([[0.0, 9.0, 0.0]]).repeat(20, 1).view(20, 1, 1, 3)
    for _ in range(3):  # three batches of 20 wrong answers each
        task._evaluate((wrong, torch.zeros(20, dtype=torch.long)), task.val_loss, task.val_acc, task.val_confusion)
    assert sum(len(part[0]) for part in task._misclassified) == 32


def test_net_data_mismatch_says_what_to_change():
    with pytest.raises(ValueError, match=r"LeNet5 cannot take MNISTDataModule's images of shape \(1, 28, 28\).*pad 2"):
        check_net_fits_data(LeNet5(), (1, 28, 28), 10, "MNISTDataModule")
    with pytest.raises(ValueError, match=r"outputs \(5,\) values per image but .* has 10 classes"):
        check_net_fits_data(Feedforward(784, 5, [16]), (1, 28, 28), 10, "MNISTDataModule")
    check_net_fits_data(LeNet5(), (1, 32, 32), 10, "MNISTDataModule")


@pytest.mark.slow
@pytest.mark.parametrize("experiment", ["mnist_mlp", "mnist_lenet", "fashion_mnist_lenet"])
def test_experiment_fit_then_test_learns(experiment, mnist_dir, tmp_path):
    common = ["--data.init_args.data_dir", str(mnist_dir / "data"), "--data.init_args.download", "false",
              "--trainer.log_every_n_steps", "2"]
    if experiment.startswith("fashion"):  # the synthetic classes are positions: a mirror changes the class
        common += ["--data.init_args.horizontal_flip", "false", "--model.init_args.tta_flip", "false"]
    config = str(EXPERIMENTS / f"{experiment}.yaml")
    run_cli("fit", "-c", config, "--trainer.max_epochs", "4", *common, cwd=tmp_path)
    test = run_cli("test", "-c", config, "--ckpt_path", "best", *common, cwd=tmp_path)
    run_dir = tmp_path / "lightning_logs" / experiment / "version_0"
    scalars, images = event_data(run_dir)
    accuracy = scalars["test/acc"][-1][1]
    assert accuracy >= 0.6, accuracy  # chance is 0.1
    first_class = "T-shirt_top" if experiment.startswith("fashion") else "0"  # 'T-shirt/top' would nest the tag
    for tag in ("train/loss", "train/acc", "val/loss", "val/acc", "val/acc_best", f"test/acc_class/{first_class}"):
        assert tag in scalars, (tag, sorted(scalars))
    assert all(tag.count("/") <= 2 for tag in scalars), sorted(scalars)
    for tag in ("val/confusion_matrix", "val/misclassified", "val/first_layer_weights", "test/confusion_matrix"):
        assert tag in images, (tag, images)
    # test figures sit at the step of the checkpoint they evaluate, next to that step's curves
    best = next((run_dir / "checkpoints").glob("best-*.ckpt"))
    step = torch.load(best, weights_only=True, mmap=True)["global_step"]
    assert step > 0 and image_steps(run_dir)["test/confusion_matrix"] == [step]
    assert "support" in test.stdout and "accuracy" in test.stdout  # the per-class table


def test_download_false_on_empty_folder_is_one_line(tmp_path):
    result = run_cli("fit", "-c", str(EXPERIMENTS / "mnist_mlp.yaml"), "--data.init_args.data_dir",
                     str(tmp_path / "nothing"), "--data.init_args.download", "false", cwd=tmp_path, check=False)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(tmp_path / "nothing" / "MNIST" / "raw") in errors[0]
    assert "--data.download true" in errors[0] and "Traceback" not in result.stderr


def test_translation_moves_each_image_by_at_most_its_pixels_and_resumes_exactly(mnist_dir):
    def module():
        return MNISTDataModule(data_dir=str(mnist_dir / "data"), download=False, translate=2)

    dm = module()
    dm.setup()
    x = dm.train[0][:64]
    moved = dm.augment_uint8(x)[:, 0]
    assert moved.shape == x.shape and moved.dtype == torch.uint8
    shifts = []
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(len(x)):  # each image is its own original shifted by (dy, dx) in [-2, 2], black filled in
        found = [(dy, dx) for dy in range(5) for dx in range(5)
                 if torch.equal(padded[i, dy:dy + 28, dx:dx + 28], moved[i])]
        assert found, f"image {i} is not a translate of its original"
        shifts.append(found[0])
    assert len(set(shifts)) > 5  # every image draws its own offset
    saved = dm.state_dict()
    after = dm.augment_uint8(x)
    resumed = module()
    resumed.load_state_dict(saved)
    assert torch.equal(resumed.augment_uint8(x), after)  # a resumed run draws the same offsets
    plain = MNISTDataModule(data_dir=str(mnist_dir / "data"), download=False)
    assert plain.augment_uint8(x) is x and plain.state_dict() == {}  # the recipe: no augmentation
    flipped = MNISTDataModule(data_dir=str(mnist_dir / "data"), download=False, horizontal_flip=True).augment_uint8(x)
    mirrored = [torch.equal(flipped[i, 0], x[i].flip(-1)) for i in range(len(x))]
    assert all(m or torch.equal(flipped[i, 0], x[i]) for i, m in enumerate(mirrored)) and 10 < sum(mirrored) < 54
    with pytest.raises(ValueError, match="--data.translate"):
        MNISTDataModule(translate=-1)


def test_net_options_keep_recipe_names_and_add_normalisation_and_dropout():
    assert set(LeNet5(batch_norm=False).state_dict()) == {
        f"{part}.{i}.{p}" for part, i in (("features", 0), ("features", 3), ("classifier", 1), ("classifier", 3),
                                          ("classifier", 5)) for p in ("weight", "bias")}
    assert set(Feedforward(784, 10, [256, 128]).state_dict()) == {
        f"layers.{i}.linear.{p}" for i in range(3) for p in ("weight", "bias")}
    options = {"batch_norm": True, "dropout": 0.3}
    for net in (LeNet5(modern=True, **options), Feedforward(784, 10, [256, 128], **options)):
        norms = [m for m in net.modules() if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d))]
        drops = [m for m in net.modules() if isinstance(m, torch.nn.Dropout)]
        assert len(norms) == (4 if isinstance(net, LeNet5) else 2) and len(drops) == 2
        x = torch.randn(16, 1, 32, 32) if isinstance(net, LeNet5) else torch.randn(16, 1, 28, 28)
        net.train()
        torch.manual_seed(0)
        assert not torch.equal(net(x), net(x))  # dropout draws a new mask per call in training
        net.eval()
        assert torch.equal(net(x), net(x)) and net(x).shape == (16, 10)
    with pytest.raises(ValueError, match="dropout"):
        LeNet5(dropout=1.0)
    with pytest.raises(ValueError, match="dropout"):
        Feedforward(784, 10, [256], dropout=-0.1)
