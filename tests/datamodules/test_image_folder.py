"""The folder data module on folders the tests write: layouts, every kind of file, the cache (hit, rebuild on a
change, never a half-written file used), the split, the report, the augmentation, one-line errors.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from datamodules import ImageFolderDataModule
from datamodules.base.splits import stratified_split
from datamodules.folder.layout import discover
from datamodules.images.augment import random_resized_crop
from datamodules.images.files import load_image
from tests.helpers import EXPERIMENTS, cli_env, run_cli
from tests.image_folders import CLASSES, write_awkward_files, write_image_folder


def module(root: Path, **options) -> ImageFolderDataModule:
    options = {"image_size": 32, "decode_workers": 0, "batch_size": 4, "cache_dir": str(root.parent / "cache"),
               **options}
    return ImageFolderDataModule(str(root), **options)


def ready(data: ImageFolderDataModule, stage: str = "fit") -> ImageFolderDataModule:
    data.prepare_data()
    data.setup(stage)
    return data


def test_class_folders_split_stratified_with_nested_files_and_awkward_files_skipped_with_reasons(tmp_path):
    root = write_image_folder(tmp_path / "photos", per_class=(12, 8, 5))
    files = write_awkward_files(root / "ant" / "odd")
    data = ready(module(root, val_size=0.25, test_size=0.2))
    assert data.class_names == list(CLASSES) and data.num_classes == 3
    report = data.report
    # ant: 12 written + 6 readable awkward files = 18; 25% val, 20% test of each class, at least one each
    assert report["images"]["val"] == {"ant": 4, "bee": 2, "cat": 1}
    assert report["images"]["test"] == {"ant": 4, "bee": 2, "cat": 1}
    assert report["images"]["train"] == {"ant": 10, "bee": 4, "cat": 3}
    assert {s["file"]: s["reason"] for s in report["skipped"]} == {
        str(files["truncated"].relative_to(root)): "truncated", str(files["empty"].relative_to(root)): "zero bytes"}
    x, y = data.train
    assert x.dtype == torch.uint8 and tuple(x.shape[1:]) == (3, 37, 37) and len(x) == len(y) == 17
    # the same seed splits the same way; the nested files count
    again = ready(module(root, val_size=0.25, test_size=0.2))
    assert len(discover(root).files) == 12 + 8 + 5 + 8 and torch.equal(again.val[1], data.val[1])


def test_each_cached_row_is_its_files_image_in_split_order_when_two_workers_decode(tmp_path):
    whole = write_image_folder(tmp_path / "whole", per_class=(12, 8, 5))  # rows written where they are stored
    broken = write_image_folder(tmp_path / "broken", per_class=(12, 8, 5))
    write_awkward_files(broken / "bee" / "odd", label=1)  # unreadable files move the rows after them
    for root, count in ((whole, 25), (broken, 31)):
        cache = str(tmp_path / f"cache-{root.name}")
        data = ready(module(root, val_size=0.25, test_size=0.2, decode_workers=2, cache_dir=cache))
        cached = data.storage_object.cached
        rows = torch.cat([data.train[0], data.val[0], data.test[0]])
        assert len(rows) == len(cached.files) == count
        for row, file, label in zip(rows, cached.files, cached.labels.tolist(), strict=True):
            assert torch.equal(row, load_image(root / file, (3, 37, 37), rule="crop")), file
            assert data.class_names[label] == Path(file).parts[0]
        assert torch.equal(torch.cat([data.train[1], data.val[1], data.test[1]]), cached.labels)
        again = ready(module(root, val_size=0.25, test_size=0.2, cache_dir=cache))
        assert not again.report["decoded_now"] and torch.equal(again.train[0], data.train[0])  # mapped again


def test_each_kind_of_file_decodes_as_the_image_it_shows(tmp_path):
    files = write_awkward_files(tmp_path / "odd")
    shape = (3, 30, 40)
    grey = load_image(files["grey"], shape, rule="crop")
    assert torch.equal(load_image(files["grey16"], shape, rule="crop"), grey)  # 16-bit scaled, not clipped
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])  # grey as three equal channels
    upright = load_image(files["rgba"], shape, rule="crop").float()

    def off(image: torch.Tensor, reference: torch.Tensor) -> float:
        return float((image.float() - reference).abs().mean())

    upside_down = upright.flip(-1).flip(-2)
    rotated = load_image(files["exif"], shape, rule="crop")  # stored sideways, EXIF says how to view it
    assert off(rotated, upright) < 0.5 * off(rotated, upside_down)  # JPEG's loss only, not a turned picture
    cmyk = load_image(files["cmyk"], shape, rule="crop")
    assert off(cmyk, upright) < 0.5 * off(cmyk, upside_down) and off(cmyk[2], upright[2]) < 25
    assert torch.equal(load_image(files["gif"], shape, rule="crop")[:, :5, :5].bool(), upright[:, :5, :5].bool())


def test_the_crop_rule_keeps_the_aspect_ratio(tmp_path):
    wide = torch.zeros(3, 20, 60, dtype=torch.uint8)
    wide[:, :, 20:40] = 255  # a white square in the middle of a black 3:1 picture
    Image.fromarray(wide.permute(1, 2, 0).numpy()).save(tmp_path / "wide.png")
    cropped = load_image(tmp_path / "wide.png", (3, 20, 20), rule="crop")
    assert cropped.float().mean() > 250  # the centre square, whole and white
    stretched = load_image(tmp_path / "wide.png", (3, 20, 20), rule="stretch")
    assert stretched.float().mean() < 120  # squeezed: the black sides come back in


def test_split_folders_and_a_csv_with_its_own_splits(tmp_path):
    for split, counts in (("train", (6, 5, 4)), ("val", (2, 2, 2)), ("test", (1, 2, 3))):
        write_image_folder(tmp_path / "split" / split, per_class=counts, seed=len(split))
    data = ready(module(tmp_path / "split"))
    assert [len(data.train[1]), len(data.val[1]), len(data.test[1])] == [15, 6, 6]
    assert data.report["layout"] == "train/val/test folders"
    flat = write_image_folder(tmp_path / "flat", per_class=(4, 4, 4))
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "split"])
        for i, path in enumerate(discover(flat).files):
            split = "val" if i % 4 == 0 else "train"
            writer.writerow([os.path.relpath(path, tmp_path), "kindx" if i < 6 else "kindy", split])
    data = ready(module(tmp_path / "flat", csv=str(tmp_path / "labels.csv")))
    assert data.class_names == ["kindx", "kindy"] and len(data.val[1]) == 3 and len(data.train[1]) == 9


def test_the_second_run_loads_the_cache_and_a_changed_folder_rebuilds_it(tmp_path):
    root = write_image_folder(tmp_path / "photos", per_class=(6, 6))
    first = ready(module(root))
    assert first.report["decoded_now"] and len(list((tmp_path / "cache").glob("*.json"))) == 1
    second = ready(module(root))
    assert not second.report["decoded_now"] and torch.equal(second.train[0], first.train[0])
    extra = root / "bee" / "new.png"
    Image.new("RGB", (40, 30), (0, 200, 0)).save(extra)  # a file added
    third = ready(module(root))
    assert third.report["decoded_now"] and len(third.train[1]) + len(third.val[1]) == 13
    os.utime(root / "ant" / "001.jpg", ns=(1, 1))  # a file changed
    assert ready(module(root)).report["decoded_now"]
    extra.unlink()  # a file removed
    fifth = ready(module(root))
    assert fifth.report["decoded_now"] and len(fifth.train[1]) + len(fifth.val[1]) == 12
    assert len(list((tmp_path / "cache").glob("*.json"))) == 1  # older caches of the same options removed


@pytest.mark.slow
def test_a_run_killed_while_caching_leaves_nothing_a_later_run_uses(tmp_path):
    root = write_image_folder(tmp_path / "photos", per_class=(150, 150), size=(600, 400))
    cache = tmp_path / "cache"
    code = ("import sys; from datamodules import ImageFolderDataModule as D; "
            f"D({str(root)!r}, image_size=64, decode_workers=0, cache_dir={str(cache)!r}).prepare_data()")
    process = subprocess.Popen([sys.executable, "-c", code], env=cli_env(), start_new_session=True)
    deadline = time.monotonic() + 60
    while not list(cache.glob(".*.tmp")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)  # until the pixel file is begun: decoding 300 photos of 600x400 takes far longer
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert list(cache.glob(".*.tmp")) and not list(cache.glob("*.json"))  # killed while caching
    data = ready(module(root, image_size=64))
    assert data.report["decoded_now"] and len(data.train[1]) + len(data.val[1]) == 300
    assert not list(cache.glob(".*.tmp"))  # the killed run's leftovers removed by the build that followed


def test_one_line_errors_for_what_cannot_be_a_data_set(tmp_path):
    one = write_image_folder(tmp_path / "one", per_class=(4,))
    with pytest.raises(ValueError, match="1 class\\(es\\) found"):
        ready(module(one))
    empty = write_image_folder(tmp_path / "empty", per_class=(4, 4))
    (empty / "zebra").mkdir()
    with pytest.raises(ValueError, match="class zebra has no images"):
        ready(module(empty))
    lonely = write_image_folder(tmp_path / "lonely", per_class=(4, 1))
    with pytest.raises(ValueError, match="class bee has no images in the val split"):
        ready(module(lonely))
    with pytest.raises(FileNotFoundError, match="--data.root .*nowhere: no such folder"):
        ready(module(tmp_path / "nowhere"))


def test_stratified_split_and_the_batched_random_resized_crop():
    labels = torch.tensor([0] * 10 + [1] * 3 + [2] * 2)
    parts = stratified_split(labels, 0.2, seed=1)
    assert torch.bincount(labels[parts["val"]], minlength=3).tolist() == [2, 1, 1]
    assert sorted(torch.cat(list(parts.values())).tolist()) == list(range(15))
    x = torch.rand(6, 3, 32, 32)
    whole = random_resized_crop(x, 16, scale=(1.0, 1.0), ratio=(1.0, 1.0))  # the whole image, halved
    expected = torch.nn.functional.interpolate(x, size=16, mode="bilinear", align_corners=False, antialias=False)
    assert torch.allclose(whole, expected, atol=1e-6)
    x = torch.rand(6, 3, 37, 37)
    one, two = (random_resized_crop(x, 16, generator=torch.Generator().manual_seed(3)) for _ in range(2))
    assert one.shape == (6, 3, 16, 16) and torch.equal(one, two)


def test_the_balanced_sampler_draws_classes_alike_and_repeats_an_epoch_exactly(tmp_path):
    root = write_image_folder(tmp_path / "photos", per_class=(30, 6, 3), size=(20, 20))
    data = ready(module(root, image_size=16, val_size=0.1, balanced=True, batch_size=8))
    counts = torch.zeros(3)
    for epoch in range(20):
        loader = data.train_dataloader()
        loader.set_epoch(epoch)
        for _, y in loader:
            counts += torch.bincount(y, minlength=3)
    assert (counts / counts.sum() - 1 / 3).abs().max() < 0.05  # 31:5:2 in the folder, about 1:1:1 drawn
    first, again = data.train_dataloader(), data.train_dataloader()
    assert all(torch.equal(a[1], b[1]) for a, b in zip(first, again, strict=True))  # (seed, epoch) decide


def test_the_cpu_crop_flip_and_normalisation_draw_and_compute_what_torchvision_would():
    from torchvision.transforms.v2 import functional as TF

    from datamodules.images.augment import resized_crop_flip_normalize, sample_boxes

    x = torch.randint(0, 256, (40, 3, 48, 40), dtype=torch.uint8)
    mean, std = torch.tensor([120.0, 110.0, 100.0]), torch.tensor([60.0, 55.0, 50.0])
    out = resized_crop_flip_normalize(x, 24, mean, std, generator=torch.Generator().manual_seed(5))
    generator = torch.Generator().manual_seed(5)  # the same draws, in the same order: boxes, then flips
    x0, y0, box_w, box_h = (t.tolist() for t in sample_boxes(40, 48, 40, (0.08, 1.0), (3 / 4, 4 / 3), generator))
    flips = torch.rand(40, generator=generator) < 0.5
    assert 5 < int(flips.sum()) < 35
    for i in range(40):
        top, left = int(y0[i]), int(x0[i])
        crop = TF.resized_crop(x[i], top, left, max(1, min(48 - top, round(box_h[i]))),
                               max(1, min(40 - left, round(box_w[i]))), [24, 24], antialias=True)
        crop = crop.flip(-1) if flips[i] else crop
        expected = (crop.float() - mean[:, None, None]) / std[:, None, None]
        assert torch.allclose(out[i], expected, atol=1e-5), i
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        alone = resized_crop_flip_normalize(x, 24, mean, std, generator=torch.Generator().manual_seed(5))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(alone, out)  # threads change the time, not the result


def _csv(path, text: str, bom: bool = False):
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode())
    return path


def test_a_csv_saved_by_excel_bad_rows_and_duplicates(tmp_path, recwarn):
    good = "path,label\na.jpg,cat\nb.jpg,dog\n"
    bom = discover(tmp_path, csv_file=str(_csv(tmp_path / "excel.csv", good, bom=True)))  # UTF-8 with a BOM
    assert bom.classes == ["cat", "dog"] and [p.name for p in bom.files] == ["a.jpg", "b.jpg"]
    cases = {
        "path,label\na.jpg,cat\nb.jpg\n": "line 3: b.jpg has no label",  # a short row: no label column
        "path,label\na.jpg,cat\nb.jpg,\n": "line 3: b.jpg has no label",  # an empty label is not a class ""
        "path,label\n,cat\n": "line 2: no path",
        "path,label,split\na.jpg,cat,train\n./a.jpg,dog,train\n": "lines 2 and 3: ./a.jpg is given as 'cat'",
        "path,label,split\na.jpg,cat,train\na.jpg,cat,val\n": "lines 2 and 3: a.jpg is given as 'cat' (train)",
    }
    for text, message in cases.items():
        with pytest.raises(ValueError, match=re.escape(message)):
            discover(tmp_path, csv_file=str(_csv(tmp_path / "bad.csv", text)))
    (tmp_path / "latin1.csv").write_bytes("path,label\nb.jpg,caf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.csv: not UTF-8 text .*save it as CSV UTF-8"):
        discover(tmp_path, csv_file=str(tmp_path / "latin1.csv"))
    twice = discover(tmp_path, csv_file=str(_csv(tmp_path / "twice.csv", good + "a.jpg,cat\n b.jpg , dog \n")))
    assert twice.classes == ["cat", "dog"] and len(twice.files) == 2 and twice.labels == [0, 1]  # counted once
    assert any("2 duplicate row(s) dropped (lines 4, 5)" in str(w.message) for w in recwarn)


def test_a_full_disk_is_known_before_decoding_and_leaves_nothing(tmp_path, monkeypatch):
    root = write_image_folder(tmp_path / "photos", per_class=(6, 6))

    def full(fd, offset, size):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(OSError, match=r"--data.cache_dir .*cache: the image cache needs 0.\d MiB and the disk has "
                                      r".* free; free space, or pass --data.cache_dir on a disk with room"):
        ready(module(root))
    assert list((tmp_path / "cache").iterdir()) == []  # no temporary, no index


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 1])
def test_a_cache_dir_on_a_full_file_system_is_one_line(tmp_path, workers):
    """A real 1 MiB tmpfs (root only) for a 1.5 MiB cache: before, a SIGBUS (no message) or a traceback."""
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        root = write_image_folder(tmp_path / "photos", per_class=(50, 50), size=(60, 60))
        result = run_cli("fit", "-c", str(EXPERIMENTS / "folder_resnet18.yaml"), "--data.root", str(root),
                         "--data.image_size", "64", "--data.cache_dir", str(small), "--data.decode_workers",
                         str(workers), "--model.init_args.net.init_args.weights", "none", cwd=tmp_path, check=False)
        lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
        assert re.search(f"--data.cache_dir {small}: the image cache needs 1.5 MiB and the disk has 1.0 MiB free",
                         lines[0]), lines[0]
        assert "free space, or pass --data.cache_dir on a disk with room" in lines[0]
        assert list(small.iterdir()) == []
    finally:
        subprocess.run(["umount", str(small)], check=False)


def _rewrite_index(path, change, checksum: bool) -> None:
    from datamodules.folder.cache import _checksum

    index = json.loads(path.read_text())
    index.pop("checksum")
    change(index)
    path.write_text(json.dumps({**index, **({"checksum": _checksum(index)} if checksum else {})}))


@pytest.mark.parametrize(("what", "change", "checksum"), [
    ("a field removed", lambda index: index.pop("digests"), True),
    ("a field added", lambda index: index.update(extra=1), True),
    ("a label out of range", lambda index: index["labels"].__setitem__(0, 7), True),
    ("two labels swapped", lambda index: index.update(labels=[1 - label for label in index["labels"]]), True),
    ("a label edited, checksum stale", lambda index: index["labels"].__setitem__(0, 1 - index["labels"][0]), False),
    ("the pixel file cut short", None, True),
])
def test_a_cache_index_that_parses_but_is_wrong_is_rebuilt(tmp_path, what, change, checksum, recwarn):
    root = write_image_folder(tmp_path / "photos", per_class=(6, 6))
    first = ready(module(root))
    truth = (first.train[0].clone(), first.train[1].clone(), first.val[1].clone())
    index = next((tmp_path / "cache").glob("*.json"))
    if change is None:
        pixels = index.with_suffix(".u8")
        os.truncate(pixels, pixels.stat().st_size - 1)
    else:
        _rewrite_index(index, change, checksum)
    again = ready(module(root))
    assert again.report["decoded_now"], what  # not used: decoded anew
    assert torch.equal(again.train[0], truth[0]) and torch.equal(again.train[1], truth[1])
    assert torch.equal(again.val[1], truth[2])
    assert any("is not valid" in str(w.message) and "built anew" in str(w.message) for w in recwarn), what
    assert ready(module(root)).report["decoded_now"] is False  # the rebuilt cache is used from then on
