"""``python -m benchmarks [NAME ...] [--smoke] [--device cpu|cuda] [--write BENCHMARKS.md]``.

``python -m benchmarks accuracy ...`` is the accuracy suite on real images (``benchmarks/accuracy.py``);
``python -m benchmarks folder_data ...`` the data path of a folder of photos (``benchmarks/folder_data.py``);
``python -m benchmarks folder_vs_idx ...`` the folder module against the MNIST module on the same real images.
"""

from __future__ import annotations

import argparse
import datetime
import shutil
import sys
from functools import partial
from pathlib import Path

import torch

from benchmarks import suites
from benchmarks.report import write_section
from benchmarks.timing import HEADER, machine

CPU_SUITES = {
    "sin_mlp": suites.sin_mlp,
    "mnist_mlp": partial(suites.mnist, "mlp"),
    "mnist_lenet": partial(suites.mnist, "lenet"),
    "cifar10_cnn": suites.cifar10_cnn,
    "alexnet_frozen_vs_full": suites.alexnet_frozen_vs_full,
}
GPU_SUITES = {
    "cifar10_resnet18": suites.cifar10_resnet18,
    "mnist_gpu": suites.mnist_gpu,
    "alexnet_gpu": suites.alexnet_gpu,
}
ALL = {**CPU_SUITES, **GPU_SUITES}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["folder_data"], ["folder_vs_idx"]):
        from benchmarks import folder_data, folder_vs_idx

        {"folder_data": folder_data, "folder_vs_idx": folder_vs_idx}[argv[0]].main(argv[1:])
        return
    if argv[:1] == ["accuracy"]:
        from benchmarks import accuracy

        accuracy.main(argv[1:])
        return
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", default=["all"], help=f"all, or some of {', '.join(ALL)}")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the code, measures nothing")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--write", type=Path, help="put the table into this markdown file")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    names = list(args.names)
    if names == ["all"]:
        names = list(CPU_SUITES) + (list(GPU_SUITES) if device.type == "cuda" else [])
    unknown = [n for n in names if n not in ALL]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {list(ALL)}")
    workdir = suites._workdir()
    rows = []
    try:
        for name in names:
            print(f"== {name}", file=sys.stderr, flush=True)
            new = ALL[name](args.smoke, device, workdir)
            for row in new:
                print(row.markdown(), flush=True)
            rows += new
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    command = "python -m benchmarks " + " ".join(argv)
    text = (f"Measured {datetime.date.today().isoformat()} on: {machine()}  \n"
            f"Command: `{command}`\n\n{HEADER}\n" + "\n".join(r.markdown() for r in rows))
    print("\n" + text)
    if args.write:
        key = "gpu" if device.type == "cuda" else "cpu"
        write_section(args.write, key + ("-smoke" if args.smoke else ""), text)


if __name__ == "__main__":
    main()
