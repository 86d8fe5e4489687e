"""``python -m benchmarks folder_data [--images 3000] [--sizes 64 224] [--end_to_end 32] [--preload LIB]
[--repeats 3] [--workdir DIR]``: the data path of a folder of photos, the folder module against torchvision's
``ImageFolder`` + ``DataLoader``, in one run on this machine; and both training a small net end to end.

The photos: real Fashion-MNIST images (fetched from Debian's package, see RECIPES.md), each scaled up to 320x240
RGB and saved as a JPEG (quality 90) in a class-folder tree: the decode cost of small real photos. Measured per
side, each in its own process (so peak memory is its own): images per second delivered to the training step as
augmented, normalised float batches (random resized crop + flip + normalise; no model) in the epoch after the
first; the first epoch (the folder module: decode + cache + the epoch); the start of a second run (cache hit);
peak resident memory. Both sides get two worker processes (the loop's ``num_workers``, the module's
``decode_workers``); the folder module augments on the device the data lives on, here the CPU.

End to end (``--end_to_end SIZE``, LeNet-5 on 3-channel images at SIZE px, Adam 1e-3, batch 64, two epochs):
the plain PyTorch loop over the same ``ImageFolder`` + ``DataLoader``, against ``ImageClassifier`` + the folder
module run by Lightning's ``Trainer`` (no validation, logging or checkpoints on either side); the training
images per second of the second epoch, and the first epoch (the module's includes decoding into the cache).

``--preload LIB`` runs both sides with ``LD_PRELOAD=LIB`` (another ``malloc``, such as tcmalloc, which PyTorch's
CPU performance guide recommends); the table says which allocator each row had.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

#: both scripts' start: their arguments, and the loop's loader (torchvision's ImageFolder + DataLoader, 2 workers)
PRELUDE = r'''
import json, resource, sys, time
from pathlib import Path
import torch
root, size, cache, side = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
torch.manual_seed(0)
out = {}
def loop_loader(drop_last):
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms as T
    tf = T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    return DataLoader(datasets.ImageFolder(str(root), tf), batch_size=64, shuffle=True, num_workers=2,
                      persistent_workers=True, drop_last=drop_last)
'''

SIDE = PRELUDE + r'''
if side == "loop":
    loader = loop_loader(drop_last=False)
    epochs = []
    for epoch in range(2):
        start, n = time.perf_counter(), 0
        for x, y in loader:
            n += len(x)
        epochs.append((time.perf_counter() - start, n))
    out["first_epoch_s"], out["epoch_s"], out["images"] = epochs[0][0], epochs[1][0], epochs[1][1]
else:
    from datamodules import ImageFolderDataModule
    def build():
        dm = ImageFolderDataModule(str(root), image_size=size, val_size=0.01, cache_dir=cache,
                                   decode_workers=2, batch_size=64, data_on_device=False)
        dm.prepare_data(); dm.setup("fit")
        return dm
    start = time.perf_counter(); dm = build(); out["decode_s"] = time.perf_counter() - start
    epochs = []
    for epoch in range(2):
        start, n = time.perf_counter(), 0
        for x, y in dm.train_dataloader():
            x = dm.to_float(x, train=True)
            n += len(x)
        epochs.append((time.perf_counter() - start, n))
    out["first_epoch_s"] = out["decode_s"] + epochs[0][0]
    out["epoch_s"], out["images"] = epochs[1][0], epochs[1][1]
    out["cache_bytes"] = int(dm.train[0].numel() + dm.val[0].numel())
    del dm
    start = time.perf_counter(); build(); out["cache_hit_s"] = time.perf_counter() - start
out["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps(out))
'''

END_TO_END = PRELUDE + r'''
from lit_models.nets import LeNet5
if side == "loop":
    loader = loop_loader(drop_last=True)
    net = LeNet5(in_channels=3, num_classes=10, modern=True)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    ends, n = [], 0
    start = time.perf_counter()
    for epoch in range(2):
        n = 0
        for x, y in loader:
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
            n += len(x)
        ends.append(time.perf_counter())
else:
    import lightning as L
    from datamodules import ImageFolderDataModule
    from lit_models import ImageClassifier
    class Clock(L.Callback):
        def __init__(self): self.ends, self.n = [], 0
        def on_train_epoch_start(self, trainer, module): self.n = 0
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx): self.n += len(batch[1])
        def on_train_epoch_end(self, trainer, module): self.ends.append(time.perf_counter())
    clock = Clock()
    dm = ImageFolderDataModule(str(root), image_size=size, val_size=0.01, cache_dir=cache, decode_workers=2,
                               batch_size=64)
    model = ImageClassifier(net=LeNet5(in_channels=3, num_classes=10, modern=True))
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        default_root_dir=cache,  # the data report goes there, not into the working folder
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        num_sanity_val_steps=0, callbacks=[clock])
    start = time.perf_counter()
    trainer.fit(model, dm)
    ends, n = clock.ends, clock.n
out["first_epoch_s"], out["epoch_s"], out["images"] = ends[0] - start, ends[1] - ends[0], n
print(json.dumps(out))
'''


def write_photos(root: Path, count: int, data_dir: Path) -> None:
    """``count`` real Fashion-MNIST training images as 320x240 RGB JPEGs in ``root/<class>/``."""
    from PIL import Image
    from torchvision.datasets import FashionMNIST

    from benchmarks.accuracy import fetch_fashion_mnist

    if root.is_dir() and sum(1 for _ in root.rglob("*.jpg")) == count:
        return
    fetch_fashion_mnist(data_dir)
    data = FashionMNIST(str(data_dir), train=True, download=False)
    for i in range(count):
        image, label = data[i]
        folder = root / data.classes[label].replace("/", "-")
        folder.mkdir(parents=True, exist_ok=True)
        image.convert("RGB").resize((320, 240), Image.Resampling.BICUBIC).save(folder / f"{i:05d}.jpg", quality=90)


def measure(root: Path, size: int, side: str, cache: Path, preload: str | None = None, code: str = SIDE) -> dict:
    env = {**os.environ, "LD_PRELOAD": preload} if preload else None
    done = subprocess.run([sys.executable, "-c", code, str(root), str(size), str(cache), side], capture_output=True,
                          text=True, check=False, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{side} at {size} px failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def both_sides(photos: Path, size: int, cache: Path, preload: str | None, repeats: int, code: str = SIDE
               ) -> tuple[dict, dict, dict]:
    """Each side measured ``repeats`` times, alternating (the module's cache removed first each time: its first
    epoch decodes); the median of each side's figures, and per-repeat ratios (module / loop) as
    ``{"rate": [...], "first": [...]}``. This shared machine's speed drifts: the ratios' spread is reported.
    """
    loops, modules = [], []
    for _ in range(repeats):
        shutil.rmtree(cache, ignore_errors=True)
        loops.append(measure(photos, size, "loop", cache, preload, code))
        modules.append(measure(photos, size, "module", cache, preload, code))
    for runs in (loops, modules):
        for run in runs:
            run["rate"] = run["images"] / run["epoch_s"]
    ratios = {"rate": [m["rate"] / lo["rate"] for lo, m in zip(loops, modules, strict=True)],
              "first": [m["first_epoch_s"] / lo["first_epoch_s"] for lo, m in zip(loops, modules, strict=True)]}
    return _median(loops), _median(modules), ratios


def _median(runs: list[dict]) -> dict:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def _spread(values: list[float], digits: int) -> str:
    """The median ratio, and the range over the repeats when there are several."""
    middle = f"{statistics.median(values):.{digits}f}x"
    return middle if len(values) < 2 else f"{middle}, {min(values):.{digits}f}-{max(values):.{digits}f}x"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks folder_data")
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--sizes", type=int, nargs="*", default=[64, 224])
    parser.add_argument("--end_to_end", type=int, nargs="*", default=[], metavar="SIZE",
                        help="also train LeNet-5 (32 px input) on both sides: 32")
    parser.add_argument("--preload", default=None, help="a malloc library both sides run with (LD_PRELOAD)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each side, alternating; medians reported")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "litexp-folder-bench")
    args = parser.parse_args(argv)
    if args.preload and not Path(args.preload).is_file():
        raise SystemExit(f"--preload {args.preload}: no such file; pass the path of a malloc library "
                         "(e.g. /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4)")
    if args.repeats < 1:
        raise SystemExit(f"--repeats must be >= 1, got {args.repeats}")
    allocator = Path(args.preload).name if args.preload else "glibc malloc"
    photos = args.workdir / "photos"
    write_photos(photos, args.images, args.workdir / "data")
    if args.sizes:
        print(f"Data path ({allocator}; medians of {args.repeats} alternating runs, ratios' range after them):\n")
        print("| size | side | images/s (epoch 2) | first epoch | cache hit start | peak RSS |")
        print("|---|---|---|---|---|---|")
    for size in args.sizes:
        loop, module, ratios = both_sides(photos, size, args.workdir / f"cache{size}", args.preload, args.repeats)
        print(f"| {size} | ImageFolder + DataLoader (2 workers) | {loop['rate']:.0f} | {loop['first_epoch_s']:.1f} s | "
              f"- | {loop['peak_rss_bytes'] / 2**30:.2f} GiB (main process) |")
        print(f"| {size} | ImageFolderDataModule | {module['rate']:.0f} ({_spread(ratios['rate'], 1)}) | "
              f"{module['first_epoch_s']:.1f} s ({_spread(ratios['first'], 2)}; decode {module['decode_s']:.1f} s) | "
              f"{module['cache_hit_s']:.2f} s ({100 * module['cache_hit_s'] / module['decode_s']:.1f}% of decoding) | "
              f"{module['peak_rss_bytes'] / 2**30:.2f} GiB (cache {module['cache_bytes'] / 2**30:.2f} GiB) |",
              flush=True)
    if args.end_to_end:
        print(f"\nEnd to end, LeNet-5 ({allocator}; medians of {args.repeats} alternating runs):\n")
        print("| size | side | training images/s (epoch 2) | first epoch |")
        print("|---|---|---|---|")
    for size in args.end_to_end:
        loop, module, ratios = both_sides(photos, size, args.workdir / f"cache-e2e{size}", args.preload,
                                          args.repeats, END_TO_END)
        print(f"| {size} | plain loop: ImageFolder + DataLoader (2 workers) | {loop['rate']:.0f} | "
              f"{loop['first_epoch_s']:.1f} s |")
        print(f"| {size} | Trainer: ImageClassifier + ImageFolderDataModule | {module['rate']:.0f} "
              f"({_spread(ratios['rate'], 1)}) | {module['first_epoch_s']:.1f} s "
              f"({_spread(ratios['first'], 2)}, decoding included) |", flush=True)
