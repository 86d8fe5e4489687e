"""``best``/``last`` among the runs trained on the configured data, and a checkpoint used on other classes refused in
one line before anything is written into its run (two folders of photos, in-process).
"""

from __future__ import annotations

import pytest

from experiments.entry import main
from tests.helpers import EXPERIMENTS
from tests.image_folders import write_image_folder


def _args(root) -> list[str]:
    return ["-c", str(EXPERIMENTS / "folder_resnet18.yaml"), "--data.root", str(root), "--data.image_size", "32",
            "--data.batch_size", "8", "--data.decode_workers", "0", "--data.test_size", "0.2",
            "--model.init_args.net.init_args.weights", "none",
            "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false", "--trainer.max_epochs", "1"]


def _error(args: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert exit_info.value.code == 2 and len(lines) == 1 and "Traceback" not in err, err[-3000:]
    return lines[0]


def _files(folder) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_best_and_last_follow_the_data_and_other_classes_are_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    two = write_image_folder(tmp_path / "two", per_class=(6, 6), size=(20, 20))
    three = write_image_folder(tmp_path / "three", per_class=(6, 6, 6), size=(20, 20), seed=1)
    main(["fit", *_args(three)])
    run = tmp_path / "lightning_logs/folder_resnet18/version_0"
    before = _files(run)
    for which in ("best", "last"):  # no run on the two-class folder: refused, naming the run and its data
        line = _error(["predict", *_args(two), "--ckpt_path", which], capsys)
        assert f"--ckpt_path {which}: no run was trained on --data.root {two}" in line
        assert f"{run}, was trained on --data.root {three}" in line
    # that run's checkpoint, named, on the two-class folder: one line, and its run untouched
    best = next((run / "checkpoints").glob("best-*.ckpt"))
    line = _error(["test", *_args(two), "--ckpt_path", str(best)], capsys)
    assert "with classes 3 (ant, bee, cat); the configured data has 2 (ant, bee)" in line
    assert _files(run) == before
    main(["fit", *_args(two)])  # version_1, on the two-class folder
    capsys.readouterr()
    main(["test", *_args(two), "--ckpt_path", "best"])
    assert "version_1" in capsys.readouterr().out
    main(["test", *_args(three), "--ckpt_path", "last"])
    assert "--ckpt_path last: version_0" in capsys.readouterr().out


def test_an_empty_data_root_is_one_line_at_serve(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    three = write_image_folder(tmp_path / "three", per_class=(6, 6, 6), size=(20, 20), seed=1)
    main(["fit", *_args(three)])
    best = next((tmp_path / "lightning_logs/folder_resnet18/version_0/checkpoints").glob("best-*.ckpt"))
    (tmp_path / "empty").mkdir()
    line = _error(["serve", *_args(tmp_path / "empty"), "--ckpt_path", str(best)], capsys)
    assert "--data.root" in line and "0 class(es) found" in line
