"""export writes TorchScript and ONNX files that answer like the checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from datamodules import MNISTDataModule
from tests.experiments.trained_runs import LENET, SIN, one_error_line
from tests.helpers import run_cli


def test_export_files_match_the_checkpoint_on_raw_uint8_images(trained):
    import onnxruntime

    result = run_cli("export", *LENET, "--ckpt_path", "best", cwd=trained)
    run = trained / "lightning_logs/mnist_lenet/version_0"
    export = run / "export"
    assert "parity model.onnx: largest absolute difference" in result.stdout
    info = json.loads((export / "model.json").read_text())
    assert info["input"] == {"name": "images", "kind": "image", "dtype": "uint8", "shape": ["N", 1, 28, 28],
                             "layout": "NCHW"}
    assert info["class_names"] == [str(i) for i in range(10)] and info["preprocessing"]["pad"] == 2
    checkpoint = Path(info["checkpoint"]["path"])
    assert checkpoint.parent == (run / "checkpoints").resolve() and checkpoint.name.startswith("best-")
    import hashlib
    assert info["checkpoint"]["sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    # independently of export's own check: the files against what `predict` wrote through the Trainer
    run_cli("predict", *LENET, "--ckpt_path", "best", cwd=trained)
    expected = torch.load(run / "predictions/test.pt", weights_only=True)["probabilities"]
    dm = MNISTDataModule(data_dir=str(trained / "data"), download=False)
    dm.setup()
    images = dm.test[0][:37].unsqueeze(1)  # uint8, a batch size the export never saw
    session = onnxruntime.InferenceSession(str(export / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": images.numpy()})[0]
    np.testing.assert_allclose(got, expected[:37].numpy(), atol=1e-5)
    program = torch.export.load(str(export / "model.pt2")).module()
    torch.testing.assert_close(program(images[:3]), expected[:3], atol=1e-5, rtol=0)


def test_export_sin_and_bad_checkpoint(trained):
    import onnxruntime

    run_cli("export", *SIN, "--ckpt_path", "best", cwd=trained)
    export = trained / "lightning_logs/sin_mlp/version_1/export"
    session = onnxruntime.InferenceSession(str(export / "model.onnx"), providers=["CPUExecutionProvider"])
    x = np.array([[0.06], [0.5], [1.0]], dtype=np.float32)
    program = torch.export.load(str(export / "model.pt2")).module()
    np.testing.assert_allclose(session.run(None, {"x": x})[0], program(torch.from_numpy(x)).detach().numpy(), atol=1e-6)
    other = trained / "lightning_logs/mnist_lenet/version_0/checkpoints/last.ckpt"
    line = one_error_line(run_cli("export", *SIN, "--ckpt_path", str(other), cwd=trained, check=False))
    assert "belongs to experiment 'mnist_lenet'" in line


