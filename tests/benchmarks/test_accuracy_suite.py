"""The accuracy suite's plumbing on synthetic files: both sides train and test, the table and the fetch."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess

import pytest
from torchvision import datasets

from benchmarks.__main__ import main
from benchmarks.accuracy import DEBIAN_PACKAGE, fetch_fashion_mnist
from datamodules.bundled.mnist import RAW_FILES
from datamodules.bundled.synthetic import write_mnist


@pytest.mark.slow
def test_smoke_trains_both_sides_tests_them_and_writes_the_table(tmp_path, capsys):
    write_mnist(tmp_path / "data", n_train=600, n_test=100, name="FashionMNIST")
    report, figures = tmp_path / "B.md", tmp_path / "runs.json"
    report.write_text("# Benchmarks\n\nkept\n")
    main(["accuracy", "--smoke", "--data_dir", str(tmp_path / "data"), "--seeds", "1", "2",
          "--only", "mnist_mlp", "fashion_mnist_lenet", "--write", str(report), "--json", str(figures)])
    runs = json.loads(figures.read_text())
    assert set(runs) == {"mnist_mlp", "fashion_mnist_lenet"}
    for sides in runs.values():
        assert set(sides["project"]) == set(sides["recipe"]) == {"1", "2"}
        for run in [*sides["project"].values(), *sides["recipe"].values()]:
            assert 0.0 <= run["test_acc"] <= 1.0 and run["epochs"] == 1 and run["train_seconds"] > 0
            assert run["best_epoch"] == 0  # 0-based on both sides, as in the checkpoint names
    # the MLP's recipe loop ran a whole epoch over the learnable synthetic images: it must have learnt them
    assert min(r["test_acc"] for r in runs["mnist_mlp"]["recipe"].values()) > 0.8
    text = report.read_text()
    assert text.startswith("# Benchmarks\n\nkept\n") and "<!-- bench:accuracy-cpu-smoke -->" in text
    mlp = next(line for line in text.splitlines() if line.startswith("| mnist_mlp |"))
    seeds = ", ".join(f"{100 * runs['mnist_mlp']['project'][s]['test_acc']:.2f}" for s in ("1", "2"))
    assert f"| {seeds} |" in mlp and "MLP 256-128-64: 0.900" in mlp and ">= 90.5%" in mlp


def test_gpu_rows_say_not_measured_without_a_gpu(tmp_path, capsys):
    write_mnist(tmp_path / "data", n_train=100, n_test=20, name="FashionMNIST")
    main(["accuracy", "--device", "cpu", "--data_dir", str(tmp_path / "data"), "--only", "fashion_mnist_resnet18"])
    out = capsys.readouterr().out
    assert "| fashion_mnist_resnet18 | not measured (needs a GPU) |" in out and "0.949" in out


def test_missing_data_is_one_line_naming_the_folder_and_the_fix(tmp_path):
    with pytest.raises(SystemExit) as err:
        main(["accuracy", "--data_dir", str(tmp_path / "nothing")])
    message = str(err.value)
    assert "\n" not in message and str(tmp_path / "nothing" / "FashionMNIST" / "raw") in message
    assert "--fetch" in message


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb (Debian/Ubuntu)")
def test_fetch_unpacks_the_debian_package_where_torchvision_reads(tmp_path, monkeypatch):
    # a package laid out like Debian's: the four gzipped IDX files under usr/share/datasets/fashion-mnist
    write_mnist(tmp_path / "made", n_train=50, n_test=10, name="FashionMNIST")
    tree = tmp_path / "pkg"
    share = tree / "usr" / "share" / "datasets" / "fashion-mnist"
    share.mkdir(parents=True)
    for name in RAW_FILES:
        made = tmp_path / "made" / "FashionMNIST" / "raw" / name
        with open(made, "rb") as src, gzip.open(share / f"{name}.gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
    (tree / "DEBIAN").mkdir()
    (tree / "DEBIAN" / "control").write_text(
        f"Package: {DEBIAN_PACKAGE}\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@t>\nDescription: t\n")
    deb = tmp_path / f"{DEBIAN_PACKAGE}_1.0_all.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(tree), str(deb)], check=True, capture_output=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "apt-get"  # `apt-get download` writes the .deb into the working directory
    fake.write_text(f"#!/bin/sh\n[ \"$1\" = download ] && [ \"$2\" = {DEBIAN_PACKAGE} ] && cp {deb} . \n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    data = tmp_path / "data"
    fetch_fashion_mnist(data)
    train = datasets.FashionMNIST(str(data), train=True, download=False)
    assert train.data.shape == (50, 28, 28) and len(datasets.FashionMNIST(str(data), train=False).targets) == 10
    raw = data / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(RAW_FILES)  # no staged leftovers
    fake.write_text("#!/bin/sh\necho 'E: Unable to locate package' >&2\nexit 100\n")
    fetch_fashion_mnist(data)  # already there: apt is not asked again
    with pytest.raises(SystemExit) as err:
        fetch_fashion_mnist(tmp_path / "elsewhere")
    message = str(err.value)
    assert "\n" not in message and "Unable to locate package" in message and "apt-get update" in message
