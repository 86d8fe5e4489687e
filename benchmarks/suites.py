"""One function per experiment: the plain loop(s) and the project, alternated in one process."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset, TensorDataset
from torchvision import datasets
from torchvision import transforms as T

from benchmarks import plain, project
from benchmarks.timing import (
    Row,
    median_epoch_seconds,
    peak_memory_mb,
    reset_peak_memory,
    steady_rate,
    within_epoch_rate,
)
from datamodules import CIFAR10DataModule, MNISTDataModule, SinDataModule
from datamodules.bundled import cifar10_files
from datamodules.bundled.synthetic import write_cifar10, write_mnist
from datamodules.images.augment import crop_flip
from datamodules.images.pil_images import PILImages
from datamodules.images.preparation import IMAGENET_MEAN, IMAGENET_STD
from lit_models.nets import CifarCNN, Feedforward, LeNet5, resnet18

ROOT = Path(__file__).resolve().parents[1]


def _median_rate(samples_per_epoch: int, runs: list) -> float:
    return statistics.median(samples_per_epoch / median_epoch_seconds(r.start, r.epochs) for r in runs)


def _ratio_rows(name: str, batch: int, rates: dict[str, float], baseline: str, notes: dict[str, str]) -> list[Row]:
    return [Row(name, side, batch, rate, rate / rates[baseline], note=notes.get(side, ""))
            for side, rate in rates.items()]


# -- sin(1/x) ---------------------------------------------------------------------------------------

def sin_mlp(smoke: bool, device: torch.device, workdir: Path) -> list[Row]:
    """Per-step throughput at the recipe's batch (64) and time to validation MSE <= 1e-3.

    Throughput, both sides: Adam 1e-2 at batch 64, full-batch validation after every epoch; the
    project also logs to TensorBoard and writes its checkpoints every epoch.
    """
    epochs, repeats = (3, 1) if smoke else (20, 5)
    dm = SinDataModule()
    dm.setup()
    (x, y), (vx, vy) = dm.train, dm.val

    def recipe_loop(epochs: int = epochs):
        torch.manual_seed(137)
        net = Feedforward(1, 1, [64, 64, 64])
        loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True)
        return plain.train(net, torch.optim.Adam(net.parameters(), lr=1e-2, weight_decay=1e-5), lambda: loader,
                           plain.mse, epochs, device, val_batches=lambda: [(vx, vy)], val_metric=plain.mse)

    def slices_loop():
        torch.manual_seed(137)
        net = Feedforward(1, 1, [64, 64, 64])
        return plain.train(net, torch.optim.Adam(net.parameters(), lr=1e-2, weight_decay=1e-5),
                           plain.slices(x, y, 64, True), plain.mse, epochs, device,
                           val_batches=lambda: [(vx, vy)], val_metric=plain.mse)

    def project_run(i: int, fused: bool):
        return project.fit("sin_mlp", [
            "--model.init_args.optimizer.init_args.lr", "0.01", "--model.init_args.lr_scheduler", "null",
            "--model.init_args.optimizer.init_args.fused", str(fused).lower(),
            "--model.init_args.figure_every_n_epochs", "0", "--trainer.check_val_every_n_epoch", "1",
            "--trainer.max_epochs", str(epochs), "--trainer.accelerator", device.type,
        ], workdir / f"sin_tp_{i}_{fused}")

    recipe_side, slices_side = "plain recipe loop (DataLoader)", "plain loop (tensor slices)"
    same_adam, default_side = "project, recipe's Adam (fused=False)", "project default (fused Adam)"
    runs: dict[str, list] = {recipe_side: [], slices_side: [], same_adam: [], default_side: []}
    for i in range(repeats):  # A/B/C/D alternation so drift hits every side alike
        runs[recipe_side].append(recipe_loop())
        runs[slices_side].append(slices_loop())
        runs[same_adam].append(project_run(i, fused=False))
        runs[default_side].append(project_run(i, fused=True))
    rates = {side: _median_rate(2000, rs) for side, rs in runs.items()}
    step_rates = {side: statistics.median(within_epoch_rate(r, 64) for r in rs) for side, rs in runs.items()}

    def vs_slices(table: dict[str, float], side: str) -> str:
        return f"vs slices loop: {table[side] / table[slices_side]:.2f}x"

    logs = "; also logs and checkpoints every epoch"
    rows = _ratio_rows("sin_mlp epochs incl. validation", 64, rates, recipe_side, {
        same_adam: vs_slices(rates, same_adam) + logs, default_side: vs_slices(rates, default_side) + logs,
    })
    rows += _ratio_rows("sin_mlp training steps only", 64, step_rates, recipe_side, {
        same_adam: vs_slices(step_rates, same_adam) + "; the difference is Lightning's per-step cost",
        default_side: vs_slices(step_rates, default_side) + "; same update rule, one fused kernel",
    })

    # time to quality: the default experiment as shipped vs the recipe's 2,000 epochs
    recipe_epochs = 20 if smoke else 2000
    recipe = recipe_loop(recipe_epochs)
    recipe_seconds = recipe.epochs[-1] - recipe.start
    recipe_hit = next((i for i, v in enumerate(recipe.val_history) if v <= 1e-3), None)
    recipe_note = (f"never; final val MSE {recipe.val_history[-1]:.3g}, best {min(recipe.val_history):.3g}"
                   if recipe_hit is None else
                   f"reached at epoch {recipe_hit} ({recipe.epochs[recipe_hit] - recipe.start:.1f}s); "
                   f"final val MSE {recipe.val_history[-1]:.3g}")
    stop = project.StopAtMetric("val/mse", 1e-3, "min")
    overrides = ["--trainer.accelerator", device.type] + (["--trainer.max_epochs", "4"] if smoke else [])
    clock = project.fit("sin_mlp", overrides, workdir / "sin_ttq", [stop])
    reached = stop.reached_at
    rows.append(Row("sin_mlp time to val MSE <= 1e-3", "plain recipe (Adam 1e-2, 2,000 epochs)", 64,
                    2000 * len(recipe.epochs) / recipe_seconds, None, recipe_seconds,
                    note=recipe_note))
    if reached is not None:
        rows.append(Row("sin_mlp time to val MSE <= 1e-3", "project default (sin_mlp.yaml)", 64,
                        2000 * len(clock.epochs) / (clock.epochs[-1] - clock.start), reached / recipe_seconds,
                        reached, note=f"reached at epoch {stop.epoch}; ratio = time / recipe's time"))
    else:
        rows.append(Row("sin_mlp time to val MSE <= 1e-3", "project default (sin_mlp.yaml)", 64, 0.0, None, None,
                        note="not reached in this run" + (" (smoke: 4 epochs)" if smoke else "")))
    if not smoke:  # the whole `make train` command, interpreter start-up and imports included
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "experiments", "fit", "-c", str(ROOT / "experiments/sin_mlp.yaml"),
                        "--trainer.default_root_dir", str(workdir / "sin_cli")], check=True, capture_output=True)
        wall = time.perf_counter() - t0
        rows.append(Row("sin_mlp `fit -c sin_mlp.yaml` wall time", "project default, whole process", 64, 0.0,
                        wall / recipe_seconds, wall, note="ratio = wall / recipe loop's 2,000 epochs"))
    return rows


# -- MNIST ------------------------------------------------------------------------------------------

def _mnist_data(workdir: Path, smoke: bool) -> Path:
    root = workdir / "mnist_data"
    if not (root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").exists():
        write_mnist(root, *((800, 200) if smoke else (60000, 10000)))  # smoke: checks the code, measures nothing
    return root


def mnist(net_name: str, smoke: bool, device: torch.device, workdir: Path) -> list[Row]:
    """Samples/s of a full epoch (48k training images) plus validation (12k): the default config's net,
    same Adam, no scheduler (the project also keeps its default label smoothing, a few flops).
    """
    data_dir = _mnist_data(workdir, smoke)
    pad = 2 if net_name == "lenet" else 0
    dm = MNISTDataModule(data_dir=str(data_dir), download=False, pad=pad)
    dm.setup()
    n_train = len(dm.train[1])
    epochs, repeats = (2, 1) if smoke else (3, 2)

    def make_net():  # the default config's net (BatchNorm on) on every side; the recipe's has none
        torch.manual_seed(0)
        return LeNet5(batch_norm=True) if net_name == "lenet" else Feedforward(784, 10, [256, 128], batch_norm=True)

    def ce(logits, y):
        return F.cross_entropy(logits, y)

    rows = []
    for batch in (64,) if smoke else (64, 128):
        def recipe_loop(batch=batch):
            steps = [T.ToTensor(), T.Normalize((0.1307,), (0.3081,))] + ([T.Pad(pad)] if pad else [])
            tv = datasets.MNIST(str(data_dir), train=True, transform=T.Compose(steps))
            train_idx = _indices_of(dm, tv)
            train_loader = DataLoader(Subset(tv, train_idx[0]), batch_size=batch, shuffle=True)
            val_loader = DataLoader(Subset(tv, train_idx[1]), batch_size=1000)
            net = make_net()
            return plain.train(net, torch.optim.Adam(net.parameters(), 1e-3, weight_decay=1e-4), lambda: train_loader,
                               ce, epochs, device, val_batches=lambda: val_loader, val_metric=plain.accuracy)

        def memory_loop(batch=batch):
            xt, yt = (t.to(device) for t in dm.train)
            xv, yv = (t.to(device) for t in dm.val)
            net = make_net()
            return plain.train(net, torch.optim.Adam(net.parameters(), 1e-3, weight_decay=1e-4),
                               plain.slices(xt, yt, batch, True), ce, epochs, device,
                               prepare=lambda x: dm.to_float(x, train=True),
                               val_batches=plain.slices(xv, yv, 1000, False), val_metric=plain.accuracy)

        def project_run(i, figures, batch=batch):
            return project.fit(f"mnist_{net_name}", [
                "--data.init_args.data_dir", str(data_dir), "--data.init_args.download", "false",
                "--data.init_args.batch_size", str(batch), "--model.init_args.lr_scheduler", "null",
                "--model.init_args.figure_every_n_epochs", "5" if figures else "0", "--trainer.max_epochs", str(epochs),
                "--trainer.accelerator", device.type,
            ], workdir / f"mnist_{net_name}_{batch}_{i}_{figures}")

        sides = {"plain recipe loop (torchvision transforms + DataLoader)": [], "plain loop (in-memory tensors)": [],
                 "project (default)": [], "project (figures off)": []}
        for i in range(repeats):
            sides["plain recipe loop (torchvision transforms + DataLoader)"].append(recipe_loop())
            sides["plain loop (in-memory tensors)"].append(memory_loop())
            sides["project (default)"].append(project_run(i, True))
            sides["project (figures off)"].append(project_run(i, False))
        rates = {side: _median_rate(n_train, rs) for side, rs in sides.items()}
        step_rates = {side: statistics.median(within_epoch_rate(r, batch) for r in rs) for side, rs in sides.items()}
        fast = rates["plain loop (in-memory tensors)"]
        rows += _ratio_rows(f"mnist_{net_name} epoch + validation", batch, rates,
                            "plain recipe loop (torchvision transforms + DataLoader)", {
                                s: f"vs in-memory loop: {rates[s] / fast:.2f}x; training steps alone "
                                   f"{step_rates[s] / step_rates['plain loop (in-memory tensors)']:.2f}x"
                                for s in rates if s.startswith("project")
                            })
    return rows


def _indices_of(dm: MNISTDataModule, dataset) -> tuple[list[int], list[int]]:
    from datamodules.base.splits import resolve_size, stratified_split

    val = resolve_size(dm.val_size, len(dataset.targets), "val_size")
    parts = stratified_split(dataset.targets, val, dm.seed)
    return parts["train"].tolist(), parts["val"].tolist()


# -- CIFAR-10 ---------------------------------------------------------------------------------------

def _cifar_data(workdir: Path, smoke: bool) -> Path:
    root = workdir / "cifar_data"
    if not (root / "cifar-10-batches-py" / "batches.meta").exists():
        write_cifar10(root, *((400, 200) if smoke else (10000, 10000)))
    return root


def _recipe_cifar_loader(data_dir: Path, batch: int, workers: int, size: int | None = None,
                         normalize=((0.5,) * 3, (0.5,) * 3)) -> DataLoader:
    """The tutorial's input pipeline: PIL transforms per sample in DataLoader workers."""
    if size:  # the AlexNet tutorial: RandomResizedCrop(224) + flip, ImageNet statistics
        augment = [T.RandomResizedCrop(size), T.RandomHorizontalFlip()]
    else:
        augment = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()]
    transform = T.Compose([*augment, T.ToTensor(), T.Normalize(*normalize)])
    # the tutorial's torchvision.datasets.CIFAR10(train=True): all 50k training images, PIL per sample
    dataset = PILImages(*cifar10_files.read_split(data_dir / cifar10_files.FOLDER, train=True), transform)
    return DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
                      pin_memory=torch.cuda.is_available(), persistent_workers=workers > 0)


def cifar10_cnn(smoke: bool, device: torch.device, workdir: Path) -> list[Row]:
    """Training samples/s of the custom CNN at batch 64, Adam; steps after a warm-up, no validation."""
    data_dir = _cifar_data(workdir, smoke)
    steps, skip, repeats = (8, 2, 1) if smoke else (60, 10, 3)
    common = ["--data.init_args.data_dir", str(data_dir), "--data.init_args.download", "false",
              "--data.init_args.verify_integrity", "false", "--model.init_args.lr_scheduler", "null",
              "--trainer.max_steps", str(steps), "--trainer.limit_val_batches", "0",
              "--trainer.accelerator", device.type, "--data.init_args.val_size", "100" if smoke else "5000"]
    loader = _recipe_cifar_loader(data_dir, 64, 2)

    def recipe_loop():
        torch.manual_seed(0)
        net = CifarCNN()
        return plain.train(net, torch.optim.Adam(net.parameters(), 1e-3, weight_decay=1e-4), lambda: loader,
                           F.cross_entropy, 1, device, max_steps=steps)

    sides: dict[str, list] = {"plain recipe loop (PIL crop+flip, DataLoader, 2 workers)": [], "project": []}
    for i in range(repeats):
        sides["plain recipe loop (PIL crop+flip, DataLoader, 2 workers)"].append(recipe_loop())
        sides["project"].append(project.fit("cifar10_cnn", common, workdir / f"cnn_{i}"))
    rates = {s: statistics.median(steady_rate(r.steps, 64, skip) for r in rs) for s, rs in sides.items()}
    return _ratio_rows("cifar10_cnn training", 64, rates, "plain recipe loop (PIL crop+flip, DataLoader, 2 workers)",
                       {"project": "device-side crop+flip"})


def cifar10_resnet18(smoke: bool, device: torch.device, workdir: Path) -> list[Row]:
    """GPU: the default experiment (bf16, channels_last, GPU-resident data, batch 512) vs the recipe.

    Recipe side: fp32, batch 64, PIL crop+flip in 4 DataLoader workers. A plain loop with the
    project's tricks (same batch, bf16, channels_last, device-side data) shows what Lightning costs.
    Project epochs include validation on 5k images (with flip TTA) and checkpointing.
    """
    data_dir = _cifar_data(workdir, smoke)
    rows = []
    recipe_steps, skip = (5, 2) if smoke else (300, 30)
    recipe_batch = 16 if smoke else 64  # the recipe's batch; tiny in smoke mode, which only checks the code
    loader = _recipe_cifar_loader(data_dir, recipe_batch, 0 if smoke else 4)

    def recipe_loop():
        torch.manual_seed(0)
        net = resnet18()
        opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        return plain.train(net, opt, lambda: loader, F.cross_entropy, 10, device, max_steps=recipe_steps)

    reset_peak_memory()
    recipe = recipe_loop()
    recipe_rate = steady_rate(recipe.steps, recipe_batch, skip)
    rows.append(Row("cifar10_resnet18 training", "plain recipe loop (fp32, PIL, DataLoader)", recipe_batch, recipe_rate,
                    1.0, 45000 / recipe_rate, peak_memory_mb(), note="seconds = 45k images at this rate"))

    dm = CIFAR10DataModule(data_dir=str(data_dir), download=False, verify_integrity=False,
                           val_size=100 if smoke else 5000)
    dm.setup()
    fast_steps = 6 if smoke else 200
    big = 16 if smoke else 512  # the default batch; tiny in smoke mode, which only checks the code
    reset_peak_memory()

    def fast_plain():
        torch.manual_seed(0)
        net = resnet18()
        opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
        xt, yt = (t.to(device) for t in dm.train)
        gen = torch.Generator(device=device).manual_seed(0)
        prepare = lambda x: dm.to_float(crop_flip(x, 4, True, gen), train=False)  # noqa: E731
        dtype = torch.bfloat16 if device.type == "cuda" else None
        return plain.train(net, opt, plain.slices(xt, yt, big, True), F.cross_entropy, 100, device,
                           prepare=prepare, max_steps=fast_steps, autocast=dtype, channels_last=True)

    fast = fast_plain()
    fast_rate = steady_rate(fast.steps, big, 2 if smoke else 20)
    rows.append(Row("cifar10_resnet18 training", "plain loop, project's tricks (bf16, channels_last, GPU data)",
                    big, fast_rate, fast_rate / recipe_rate, 45000 / fast_rate, peak_memory_mb()))

    # torch.compile is a GPU measurement; on the CPU (smoke checks) it would only cost minutes
    for compiled in (False, True) if device.type == "cuda" else (False,):
        reset_peak_memory()
        epochs = 2 if smoke else 3
        overrides = ["--data.init_args.data_dir", str(data_dir), "--data.init_args.download", "false",
                     "--data.init_args.verify_integrity", "false", "--trainer.max_epochs", str(epochs),
                     "--model.init_args.compile_net", str(compiled).lower(),
                     "--data.init_args.val_size", "100" if smoke else "5000",
                     "--data.init_args.batch_size", str(big)]
        overrides += ["--trainer.limit_train_batches", "6"] if smoke else []
        t0 = time.perf_counter()
        clock = project.fit("cifar10_resnet18", overrides, workdir / f"r18_{compiled}")
        total = time.perf_counter() - t0
        rate = steady_rate(clock.steps, big, min(20, len(clock.steps) // 2), clock.step_epochs)
        epoch_s = median_epoch_seconds(clock.start, clock.epochs)
        label = "project default" + (" + torch.compile" if compiled else "")
        rows.append(Row("cifar10_resnet18 training", label, big, rate, rate / recipe_rate, epoch_s, peak_memory_mb(),
                        note=f"training steps only; seconds = median epoch incl. validation; "
                             f"vs tricks loop {rate / fast_rate:.2f}x; "
                             f"whole fit of {epochs} epochs {total:.1f}s"))
    return rows


def gpu_utilisation(fn, *args):
    """Run ``fn`` while sampling the GPU's utilisation through NVML (None where NVML is missing)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    except Exception:
        return fn(*args), None
    samples: list[int] = []
    done = threading.Event()

    def sample():
        while not done.is_set():
            samples.append(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            time.sleep(0.1)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        result = fn(*args)
    finally:
        done.set()
        thread.join()
    return result, (statistics.mean(samples[len(samples) // 4:]) if samples else None)


def mnist_gpu(smoke: bool, device: torch.device, workdir: Path) -> list[Row]:
    """GPU: samples/s of the default MNIST experiments and the GPU utilisation seen meanwhile."""
    data_dir = _mnist_data(workdir, smoke)
    rows = []
    for name in ("mnist_mlp", "mnist_lenet"):
        epochs = 2 if smoke else 4
        overrides = ["--data.init_args.data_dir", str(data_dir), "--data.init_args.download", "false",
                     "--trainer.max_epochs", str(epochs)]
        clock, util = gpu_utilisation(project.fit, name, overrides, workdir / f"{name}_gpu")
        n_train = 640 if smoke else 48000
        rate = n_train / median_epoch_seconds(clock.start, clock.epochs)
        rows.append(Row(f"{name} epoch + validation", "project default", 128, rate,
                        note=f"GPU utilisation {util:.0f}%" if util is not None else "GPU utilisation n/a"))
    return rows


def _workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="litexp-bench-"))


# -- AlexNet ----------------------------------------------------------------------------------------

def _alexnet_overrides(data_dir: Path, batch: int, steps: int, smoke: bool) -> list[str]:
    return ["--data.init_args.data_dir", str(data_dir), "--data.init_args.download", "false",
            "--data.init_args.verify_integrity", "false", "--data.init_args.batch_size", str(batch),
            "--data.init_args.val_size", "100" if smoke else "5000",
            "--model.init_args.net.init_args.weights", "none",  # speed does not depend on the values
            "--trainer.max_steps", str(steps), "--trainer.limit_val_batches", "0"]


def alexnet_frozen_vs_full(smoke: bool, device: torch.device, workdir: Path) -> list[Row]:
    """Training steps/s at 224x224 of the frozen backbone vs the full fine-tune (same batch)."""
    data_dir = _cifar_data(workdir, smoke)
    batch, steps, skip = (4, 4, 1) if smoke else (32, 14, 4)
    rates = {}
    for name in ("cifar10_alexnet", "cifar10_alexnet_frozen"):
        clock = project.fit(name, _alexnet_overrides(data_dir, batch, steps, smoke) +
                            ["--trainer.accelerator", device.type], workdir / name)
        rates[name] = steady_rate(clock.steps, batch, skip)
    full = rates["cifar10_alexnet"]
    return [Row("alexnet 224px training", "full fine-tune", batch, full, 1.0),
            Row("alexnet 224px training", "frozen backbone", batch, rates["cifar10_alexnet_frozen"],
                rates["cifar10_alexnet_frozen"] / full, note="ratio = frozen / full steps per second")]


def alexnet_gpu(smoke: bool, device: torch.device, workdir: Path) -> list[Row]:
    """GPU: full fine-tune at 224 (bf16, device-side resize, batch 128) vs the tutorial's loop
    (fp32, PIL RandomResizedCrop(224) + flip in 4 DataLoader workers, batch 32), alternated A/B/A/B.

    The tutorial loop is bound by its DataLoader workers (PIL at 224x224), so its rate, and the
    ratio, follow the host CPU of the machine drawn more than the GPU.
    """
    data_dir = _cifar_data(workdir, smoke)
    steps, skip, repeats = (4, 1, 1) if smoke else (150, 20, 2)
    loader = _recipe_cifar_loader(data_dir, 32, 0 if smoke else 4, size=224,
                                  normalize=(IMAGENET_MEAN, IMAGENET_STD))
    from lit_models.nets import AlexNetClassifier

    batch = 8 if smoke else 128
    recipe_rates, project_rates, recipe_mem, project_mem = [], [], [], []
    for i in range(repeats):
        torch.manual_seed(0)
        net = AlexNetClassifier(weights="none")
        reset_peak_memory()
        recipe = plain.train(net, torch.optim.SGD(net.parameters(), lr=1e-4, momentum=0.9, weight_decay=1e-2),
                             lambda: loader, F.cross_entropy, 10, device, max_steps=steps)
        recipe_rates.append(steady_rate(recipe.steps, 32, skip))
        recipe_mem.append(peak_memory_mb())
        del net, recipe
        reset_peak_memory()
        clock = project.fit("cifar10_alexnet", _alexnet_overrides(data_dir, batch, steps, smoke),
                            workdir / f"alex_gpu_{i}")
        project_rates.append(steady_rate(clock.steps, batch, skip))
        project_mem.append(peak_memory_mb())

    def spread(rates: list[float]) -> str:
        return f"{len(rates)} runs: " + ", ".join(f"{r:,.0f}" for r in rates)

    recipe_rate, rate = statistics.median(recipe_rates), statistics.median(project_rates)
    return [
        Row("alexnet 224px full fine-tune", "plain recipe loop (fp32, PIL, DataLoader)", 32, recipe_rate, 1.0,
            peak_mem_mb=max(recipe_mem) if recipe_mem[0] is not None else None, note=spread(recipe_rates)),
        Row("alexnet 224px full fine-tune", "project default (bf16, device resize)", batch, rate, rate / recipe_rate,
            peak_mem_mb=max(project_mem) if project_mem[0] is not None else None, note=spread(project_rates)),
    ]
