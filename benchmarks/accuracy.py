"""``python -m benchmarks accuracy [--data_dir DIR] [--fetch] [--seeds ...] [--write BENCHMARKS.md]``.

Trains the default experiment configs on real images, tests each run's best checkpoint, and puts
next to it the plain recipe loop trained for the same number of epochs on the same split, and the
published figure for the data set. What a user gets from ``fit -c experiments/<name>.yaml`` then
``test --ckpt_path best`` is exactly what is measured: the configs run unchanged but for the data
set, its folder and the seeds.

A seed sets both ``seed_everything`` (initialisation, dropout) and ``data.seed`` (the train/validation
split, the batch order, the augmentation draws), so the spread over seeds is that of whole runs;
every seed is tested on the same test set, and its recipe loop trains on the same split. Tuning
happens on the validation split only: the test set is read after training, by this suite.
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks import plain, project
from benchmarks.report import write_section
from benchmarks.timing import machine, sync
from datamodules import MNISTDataModule
from datamodules.bundled.mnist import RAW_FILES
from datamodules.images.augment import crop_flip
from lit_models.nets import CifarCNN, CifarResNet, Feedforward, LeNet5

DEBIAN_PACKAGE = "dataset-fashion-mnist"
PUBLISHED = "Fashion-MNIST benchmark table (Xiao et al. 2017, submitted results)"


@dataclass
class Recipe:
    """The plain tutorial loop for one net: no schedule, no augmentation unless the recipe has it."""

    net: Callable[[], nn.Module]
    optimizer: Callable[[list[nn.Parameter]], torch.optim.Optimizer]
    batch_size: int
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None
    description: str = ""


def _adam(params: list[nn.Parameter]) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=1e-3, weight_decay=1e-4)


def _resnet_sgd(params: list[nn.Parameter]) -> torch.optim.Optimizer:
    # the recipe's MultiStepLR milestones (60, 80) lie past every epoch count here: lr stays 0.1
    return torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4)


def _resnet18_grey() -> nn.Module:
    return CifarResNet(10, in_channels=1, blocks_per_stage=[2, 2, 2, 2])


@dataclass
class Entry:
    experiment: str
    recipe: Recipe
    published: str
    target: float | None
    gpu: bool = False
    seeds: dict[int, dict] = field(default_factory=dict)
    recipe_seeds: dict[int, dict] = field(default_factory=dict)


def entries() -> list[Entry]:
    mnist_recipe = "Adam 1e-3, weight decay 1e-4, batch 64"
    return [
        Entry("mnist_mlp", Recipe(lambda: Feedforward(784, 10, [256, 128]), _adam, 64, None, mnist_recipe),
              "MLP 256-128-64: 0.900", 0.905),
        Entry("mnist_lenet", Recipe(lambda: LeNet5(modern=False), _adam, 64, None, mnist_recipe),
              "2 conv layers, < 100K parameters: 0.925", 0.905),
        Entry("fashion_mnist_lenet", Recipe(lambda: LeNet5(modern=True), _adam, 64, None, mnist_recipe),
              "2 conv layers, < 100K parameters: 0.925", 0.920),
        Entry("fashion_mnist_cnn", Recipe(lambda: CifarCNN(10, in_channels=1), _adam, 64, None, mnist_recipe),
              "2 conv layers + 3 FC (1.8M parameters): 0.932", None, gpu=True),
        Entry("fashion_mnist_resnet18",
              Recipe(_resnet18_grey, _resnet_sgd, 64, lambda x, g: crop_flip(x, 4, True, g),
                     "SGD 0.1, momentum 0.9, weight decay 5e-4, batch 64, crop 4 px + flip"),
              "ResNet-18: 0.949; best listed (WRN-40-4): 0.967", 0.950, gpu=True),
    ]


# -- data -------------------------------------------------------------------------------------------

def fetch_fashion_mnist(data_dir: Path) -> None:
    """Debian/Ubuntu ship the real Fashion-MNIST as a package: download it with apt and unpack the
    four IDX files where torchvision's reader looks (``<data_dir>/FashionMNIST/raw``).
    """
    raw = data_dir / "FashionMNIST" / "raw"
    if all((raw / name).is_file() for name in RAW_FILES):
        return
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise SystemExit(f"--fetch needs apt-get and dpkg-deb (Debian/Ubuntu); without them put the four "
                         f"Fashion-MNIST IDX files into {raw} or pass --download")
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(["apt-get", "download", DEBIAN_PACKAGE], cwd=tmp, capture_output=True, text=True)
        debs = list(Path(tmp).glob(f"{DEBIAN_PACKAGE}_*.deb"))
        if done.returncode != 0 or not debs:
            reason = (done.stderr.strip().splitlines() or ["no .deb written"])[-1]
            raise SystemExit(f"--fetch: `apt-get download {DEBIAN_PACKAGE}` failed ({reason}); run "
                             "`apt-get update` first, or put the IDX files into " + str(raw))
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), tmp], check=True)
        source = Path(tmp) / "usr" / "share" / "datasets" / "fashion-mnist"
        raw.mkdir(parents=True, exist_ok=True)
        for name in RAW_FILES:
            packed = source / f"{name}.gz"
            if not packed.is_file():
                raise SystemExit(f"--fetch: {DEBIAN_PACKAGE} has no {packed.name}; put the IDX files into {raw}")
            staged = raw / f".{name}.partial"
            with gzip.open(packed, "rb") as src, open(staged, "wb") as dst:
                shutil.copyfileobj(src, dst)
            staged.replace(raw / name)  # a file appears whole or not at all
    print(f"fetched {DEBIAN_PACKAGE} into {raw}", file=sys.stderr)


def _data_overrides(dataset: str, data_dir: Path, download: bool, seed: int) -> list[str]:
    return ["--data.init_args.dataset", dataset, "--data.init_args.data_dir", str(data_dir),
            "--data.init_args.download", str(download).lower(), "--data.init_args.seed", str(seed)]


# -- the two sides ----------------------------------------------------------------------------------

def project_run(entry: Entry, seed: int, args: argparse.Namespace, workdir: Path) -> tuple[dict, MNISTDataModule]:
    """``fit -c experiments/<experiment>.yaml`` then ``test --ckpt_path best``, in this process.

    Also hands back the run's data module: the recipe loop trains on its split (it keeps the raw uint8
    tensors on the host and its evaluation preprocessing).
    """
    overrides = [*_data_overrides(args.dataset, args.data_dir, args.download, seed), "--seed_everything", str(seed),
                 "--trainer.accelerator", args.device, *args.smoke_overrides]
    cli = project.build(entry.experiment, overrides, workdir / f"{entry.experiment}_{seed}")
    sync()
    start = time.perf_counter()
    cli.trainer.fit(cli.model, cli.datamodule)
    sync()
    seconds = time.perf_counter() - start
    best = cli.trainer.checkpoint_callback
    best_val, best_path = float(best.best_model_score), best.best_model_path
    cli.trainer.test(cli.model, cli.datamodule, ckpt_path="best", verbose=False)
    figures = {"test_acc": float(cli.trainer.callback_metrics["test/acc"]), "best_val_acc": best_val,
               "best_epoch": _epoch_of(best_path), "epochs": cli.trainer.current_epoch, "train_seconds": seconds}
    return figures, cli.datamodule


def _epoch_of(path: str) -> int | None:
    stem = Path(path).stem
    return int(stem.split("epoch")[-1]) if "epoch" in stem else None


def recipe_run(entry: Entry, dm: MNISTDataModule, seed: int, epochs: int, device: torch.device) -> dict:
    """The plain loop at the project's epoch count: keeps its best-by-validation weights, then tests them."""
    recipe = entry.recipe
    torch.manual_seed(seed)
    net = recipe.net()
    optimizer = recipe.optimizer(list(net.parameters()))
    x, y = (t.to(device) for t in dm.train)
    generator = torch.Generator(device=device).manual_seed(seed)
    batches = plain.slices(x, y, recipe.batch_size, shuffle=True)

    def train_batches():
        for xb, yb in batches():
            yield (recipe.augment(xb.unsqueeze(1), generator) if recipe.augment else xb), yb

    best: dict = {"val": -1.0, "state": None, "epoch": None}
    history: list[float] = []

    def keep_best(model: nn.Module, value: float) -> None:
        history.append(value)
        if value > best["val"]:  # epochs 0-based, as Lightning names its checkpoints
            best.update(val=value, state=copy.deepcopy(model.state_dict()), epoch=len(history) - 1)

    vx, vy = (t.to(device) for t in dm.val)

    def prepare(images: torch.Tensor) -> torch.Tensor:  # evaluation's preprocessing, never augmentation
        return dm.to_float(images, train=False)

    clock = plain.train(net, optimizer, train_batches, F.cross_entropy, epochs, device, prepare=prepare,
                        val_batches=plain.slices(vx, vy, 1000, shuffle=False), val_metric=plain.accuracy,
                        after_validation=keep_best)
    seconds = clock.epochs[-1] - clock.start
    net.load_state_dict(best["state"])
    net.eval()
    tx, ty = (t.to(device) for t in dm.test)
    correct = 0
    with torch.no_grad():
        for xb, yb in plain.slices(tx, ty, 1000, shuffle=False)():
            correct += int((net(prepare(xb)).argmax(1) == yb).sum())
    return {"test_acc": correct / len(ty), "best_val_acc": best["val"], "best_epoch": best["epoch"],
            "epochs": epochs, "train_seconds": seconds}


# -- the table --------------------------------------------------------------------------------------

def _mean_std(values: list[float]) -> str:
    if not values:
        return "—"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.2f} ± {100 * std:.2f}"


def _per_seed(runs: dict[int, dict]) -> str:
    return ", ".join(f"{100 * r['test_acc']:.2f}" for r in runs.values())


HEADER = ("| experiment | test acc % (mean ± std) | per seed | epochs | training s (mean) "
          "| plain recipe loop, same epochs: test acc % | per seed | recipe s (mean) | published | target |\n"
          "|---|---|---|---|---|---|---|---|---|---|")


def row(entry: Entry, measured: bool) -> str:
    target = f">= {100 * entry.target:.1f}%" if entry.target else ""
    if not measured:
        return (f"| {entry.experiment} | not measured (needs a GPU) | | | | | | | {entry.published} | {target} |")
    ours = [r["test_acc"] for r in entry.seeds.values()]
    theirs = [r["test_acc"] for r in entry.recipe_seeds.values()]
    epochs = next(iter(entry.seeds.values()))["epochs"]
    seconds = statistics.mean(r["train_seconds"] for r in entry.seeds.values())
    recipe_seconds = statistics.mean(r["train_seconds"] for r in entry.recipe_seeds.values())
    met = "" if entry.target is None else (" (met)" if min(ours) >= entry.target else " (not met)")
    return (f"| {entry.experiment} | {_mean_std(ours)} | {_per_seed(entry.seeds)} | {epochs} | {seconds:.1f} "
            f"| {_mean_std(theirs)} | {_per_seed(entry.recipe_seeds)} | {recipe_seconds:.1f} "
            f"| {entry.published} | {target}{met} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks accuracy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", type=Path, default=Path("data"),
                        help="folder holding <dataset>/raw/ with the four IDX files (default: data)")
    parser.add_argument("--dataset", default="FashionMNIST", choices=["FashionMNIST", "MNIST", "KMNIST"])
    parser.add_argument("--fetch", action="store_true",
                        help=f"get the real Fashion-MNIST from Debian's {DEBIAN_PACKAGE} package first (apt)")
    parser.add_argument("--download", action="store_true", help="let torchvision download missing files")
    parser.add_argument("--seeds", type=int, nargs="+", default=[137, 138, 139])
    parser.add_argument("--only", nargs="+", help="some of the experiments (default: all the device can run)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--smoke", action="store_true", help="one short epoch: checks the code, measures nothing")
    parser.add_argument("--write", type=Path, help="put the table into this markdown file")
    parser.add_argument("--json", type=Path, help="also write every run's figures here")
    args = parser.parse_args(argv)
    args.data_dir = args.data_dir.resolve()
    known = {e.experiment: e for e in entries()}
    unknown = sorted(set(args.only or ()) - set(known))
    if unknown:
        parser.error(f"--only: unknown experiment(s) {unknown}; choose from {list(known)}")
    if args.fetch:
        if args.dataset != "FashionMNIST":
            parser.error(f"--fetch gets Fashion-MNIST only; for {args.dataset} pass --download (needs internet)")
        fetch_fashion_mnist(args.data_dir)
    raw = args.data_dir / args.dataset / "raw"
    if not args.download and not all((raw / name).is_file() for name in RAW_FILES):
        raise SystemExit(f"python -m benchmarks accuracy: no {args.dataset} IDX files in {raw}; pass --fetch "
                         "(Fashion-MNIST, via apt), --download (internet) or a --data_dir that holds them")
    args.smoke_overrides = (["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "4",
                             "--trainer.num_sanity_val_steps", "0", "--data.init_args.val_size", "0.2",
                             "--data.init_args.batch_size", "32"] if args.smoke else [])
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    chosen = [e for e in entries() if args.only is None or e.experiment in args.only]
    workdir = Path(tempfile.mkdtemp(prefix="litexp-accuracy-"))
    try:
        for entry in chosen:
            if entry.gpu and not on_gpu and not args.smoke:
                continue
            for seed in args.seeds:
                print(f"== {entry.experiment} seed {seed}", file=sys.stderr, flush=True)
                entry.seeds[seed], dm = project_run(entry, seed, args, workdir)
                entry.recipe_seeds[seed] = recipe_run(entry, dm, seed, entry.seeds[seed]["epochs"], device)
                print(f"   project {entry.seeds[seed]}\n   recipe  {entry.recipe_seeds[seed]}", file=sys.stderr,
                      flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    command = "python -m benchmarks accuracy " + " ".join(sys.argv[1:] if argv is None else argv)
    rows = [row(e, bool(e.seeds)) for e in chosen]
    recipes = "; ".join(f"{e.experiment}: {e.recipe.description}" for e in chosen)
    text = (f"Measured {time.strftime('%Y-%m-%d')} on {args.dataset} from {args.data_dir} "
            f"({'smoke: one short epoch, measures nothing' if args.smoke else f'seeds {args.seeds}'}) on: "
            f"{machine()}  \nCommand: `{command}`  \nPublished: {PUBLISHED}.  \nRecipe loops: {recipes}.\n\n"
            f"{HEADER}\n" + "\n".join(rows))
    print("\n" + text)
    if args.json:
        args.json.write_text(json.dumps({e.experiment: {"project": e.seeds, "recipe": e.recipe_seeds}
                                         for e in chosen}, indent=2))
    if args.write:
        key = f"accuracy-{'gpu' if on_gpu else 'cpu'}" + ("-smoke" if args.smoke else "")
        write_section(args.write, key, text)


if __name__ == "__main__":
    main()
