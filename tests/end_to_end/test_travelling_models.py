"""A model that travels: trained on a folder here, then predicted, exported and served from its checkpoint alone
(the folder renamed away, the checkpoint copied elsewhere), with the answers it gave beside its folder; older
checkpoints keep working with their config; data that contradicts a checkpoint is one line; and a run started
from another run's checkpoint (pre-train, then fine-tune).
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from lit_models.inference import CHECKPOINT_KEY
from lit_models.nets import TorchvisionClassifier
from tests.experiments.deploy.test_serve import _start as start_serving
from tests.experiments.trained_runs import one_error_line, read_csv
from tests.helpers import EXPERIMENTS, run_cli
from tests.image_folders import write_image_folder
from tests.servers import free_port, http_post, multipart, stop

pytestmark = pytest.mark.slow

CONFIG = str(EXPERIMENTS / "folder_resnet18.yaml")
#: a small run: 32-px crops of 37-px stored images, random init, two epochs, a normalisation of its own
SMALL = ["--data.image_size", "32", "--data.batch_size", "8", "--model.init_args.net.init_args.weights", "none",
         "--data.mean", "[0.4, 0.5, 0.6]", "--data.std", "[0.2, 0.25, 0.3]", "--trainer.enable_progress_bar", "false",
         "--trainer.enable_model_summary", "false", "--trainer.max_epochs", "2"]


@pytest.fixture(scope="module")
def travelled(tmp_path_factory):
    """A run on ``photos/`` (3 classes), its predictions of ``incoming/`` with the folder there, then the folder
    renamed away and the best checkpoint copied to ``server/model.ckpt``.
    """
    root = tmp_path_factory.mktemp("travel")
    photos = root / "photos"
    for split, counts, seed in (("train", (10, 10, 10), 0), ("val", (3, 3, 3), 1)):
        write_image_folder(photos / split, per_class=counts, size=(44, 36), seed=seed)
    write_image_folder(root / "incoming", per_class=(3, 2, 2), size=(60, 40), seed=5)
    args = ["-c", CONFIG, "--data.root", "photos", *SMALL]
    run_cli("fit", *args, cwd=root)
    run_cli("predict", *args, "--ckpt_path", "best", "--data.predict_dir", "incoming", cwd=root)
    run = root / "lightning_logs/folder_resnet18/version_0"
    _, with_folder = read_csv(run / "predictions/incoming.csv")
    best = next((run / "checkpoints").glob("best*.ckpt"))
    (root / "server").mkdir()
    shutil.copy(best, root / "server/model.ckpt")
    photos.rename(root / "photos_elsewhere")
    return root, args, with_folder


def _same_answers(rows, expected):
    assert [r["source"] for r in rows] == [r["source"] for r in expected] and len(rows) == 7
    for row, want in zip(rows, expected, strict=True):
        assert row["prediction"] == want["prediction"] and row["target"] == want["target"]
        for name in ("ant", "bee", "cat"):
            assert float(row[f"p_{name}"]) == pytest.approx(float(want[f"p_{name}"]), abs=1e-6)


def test_every_checkpoint_carries_what_inference_needs(travelled):
    root, _, _ = travelled
    record = torch.load(root / "server/model.ckpt", weights_only=True, mmap=True)[CHECKPOINT_KEY]
    assert record["class_names"] == ["ant", "bee", "cat"] and record["input"]["shape"] == ["N", 3, 37, 37]
    prep = record["preprocessing"]
    assert prep["mean"] == pytest.approx([0.4, 0.5, 0.6]) and prep["std"] == pytest.approx([0.2, 0.25, 0.3])
    assert prep["center_crop"] == 32 and prep["resize_rule"] == "crop" and record["output"]["kind"] == "probabilities"


def test_predict_from_the_checkpoint_alone_gives_the_folder_answers(travelled):
    root, _, with_folder = travelled
    server = root / "server"
    shutil.copytree(root / "incoming", server / "incoming", dirs_exist_ok=True)
    run_cli("predict", "--ckpt_path", "model.ckpt", "--data.predict_dir", "incoming", cwd=server)
    written = sorted(server.rglob("predictions/incoming.csv"))
    assert len(written) == 1
    _same_answers(read_csv(written[0])[1], with_folder)
    nothing = run_cli("predict", "--ckpt_path", "model.ckpt", cwd=server, check=False)
    assert "needs --data.predict_dir DIR" in one_error_line(nothing)


def test_predict_with_the_config_and_the_training_folder_gone(travelled):
    root, args, with_folder = travelled
    run_cli("predict", *args, "--ckpt_path", "best", "--data.predict_dir", "incoming", cwd=root)
    _, rows = read_csv(root / "lightning_logs/folder_resnet18/version_0/predictions/incoming.csv")
    _same_answers(rows, with_folder)


def test_export_from_the_checkpoint_alone(travelled):
    root, _, _ = travelled
    server = root / "server"
    done = run_cli("export", "--ckpt_path", "model.ckpt", cwd=server)
    model = json.loads((server / "export/model.json").read_text())
    assert model["class_names"] == ["ant", "bee", "cat"] and model["input"]["shape"] == ["N", 3, 37, 37]
    assert model["preprocessing"]["mean"] == pytest.approx([0.4, 0.5, 0.6])
    assert "parity model.onnx" in done.stdout and (server / "export/model.onnx").is_file()


@pytest.mark.server
def test_serve_from_the_checkpoint_alone_answers_as_predict(travelled):
    root, _, with_folder = travelled
    server = root / "server"
    port = free_port()
    process, log = start_serving(server, [], port, "serve.log", ckpt_path="model.ckpt")
    try:
        want = with_folder[0]
        body, content_type = multipart("image", "x.png", (root / "incoming" / want["source"]).read_bytes())
        status, answer = http_post(f"http://127.0.0.1:{port}/predict", body, content_type)
        assert status == 200, answer
        for name, p in answer["probabilities"].items():
            assert p == pytest.approx(float(want[f"p_{name}"]), abs=2e-6)
    finally:
        stop(process)
        log.close()


def test_an_older_checkpoint_needs_its_config_and_says_so(travelled, tmp_path):
    root, _, _ = travelled
    checkpoint = torch.load(root / "server/model.ckpt", weights_only=True)
    del checkpoint[CHECKPOINT_KEY]  # as written before checkpoints described their data
    torch.save(checkpoint, tmp_path / "old.ckpt")
    refused = run_cli("export", "--ckpt_path", "old.ckpt", cwd=tmp_path, check=False)
    assert "written before checkpoints carried their data description" in one_error_line(refused)
    photos = tmp_path / "photos"
    shutil.copytree(root / "photos_elsewhere", photos)
    run_cli("predict", "-c", CONFIG, "--data.root", str(photos), *SMALL, "--ckpt_path", str(tmp_path / "old.ckpt"),
            "--data.predict_dir", str(root / "incoming"), cwd=tmp_path)
    assert len(read_csv(next(tmp_path.rglob("predictions/incoming.csv")))[1]) == 7


def test_data_that_contradicts_the_checkpoint_is_one_line(travelled, tmp_path):
    root, _, _ = travelled
    photos = tmp_path / "photos"
    shutil.copytree(root / "photos_elsewhere", photos)
    args = ["-c", CONFIG, "--data.root", str(photos), *SMALL, "--ckpt_path", str(root / "server/model.ckpt")]
    bigger = run_cli("predict", *args, "--data.image_size", "48", cwd=tmp_path, check=False)
    assert "stored at 3x37x37" in one_error_line(bigger)
    shutil.rmtree(photos / "train/cat")
    shutil.rmtree(photos / "val/cat")
    fewer = run_cli("predict", *args, cwd=tmp_path, check=False)
    assert "a head for 3 classes; the configured data has 2 (ant, bee)" in one_error_line(fewer)


def test_a_run_starts_from_another_runs_checkpoint(travelled, tmp_path):
    root, _, _ = travelled
    best = root / "server/model.ckpt"
    saved = torch.load(best, weights_only=True)["state_dict"]
    net = TorchvisionClassifier("resnet18", weights=str(best))
    assert net.expects["mean"] == pytest.approx([0.4, 0.5, 0.6])
    for key, value in net.model.state_dict().items():  # every tensor as trained, the head too (same 3 classes)
        assert torch.equal(value, saved[f"net.model.{key}"]), key
    net.match_classes(2)  # fewer classes: a new head, the backbone untouched
    assert net.head.weight.shape == (2, 512)
    assert all(torch.equal(v, saved[f"net.model.{k}"]) for k, v in net.model.state_dict().items()
               if not k.startswith("fc."))

    # through the CLI, by reference: fine-tune on two classes, normalised as the first run was
    small = tmp_path / "small"
    for split, seed in (("train", 7), ("val", 8)):
        write_image_folder(small / split, per_class=(4, 4), size=(44, 36), seed=seed)
    shutil.copytree(root / "lightning_logs", tmp_path / "lightning_logs")
    tuned = [a for a in SMALL if a not in ("--data.mean", "[0.4, 0.5, 0.6]", "--data.std", "[0.2, 0.25, 0.3]")]
    tuned[tuned.index("none")] = "folder_resnet18:best"
    started = run_cli("fit", "-c", CONFIG, "--data.root", str(small), *tuned, "--experiment", "small",
                      "--trainer.max_epochs", "1", cwd=tmp_path)
    assert "starting from" in started.stdout and "data normalised as that run" in started.stdout
    fine = torch.load(next((tmp_path / "lightning_logs/small/version_0/checkpoints").glob("last*.ckpt")),
                      weights_only=True)
    assert fine[CHECKPOINT_KEY]["preprocessing"]["mean"] == pytest.approx([0.4, 0.5, 0.6])
    assert fine["state_dict"]["net.model.fc.weight"].shape == (2, 512)

    missing = run_cli("fit", "-c", CONFIG, "--data.root", str(small), *tuned[:-2], "--experiment", "small",
                      "--model.init_args.net.init_args.weights", "nothing_here:best", cwd=tmp_path, check=False)
    assert "nothing_here:best" in one_error_line(missing)
