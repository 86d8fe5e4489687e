"""serve answers over HTTP on 127.0.0.1 as predict does; a port in use is one line."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
import torch

from tests.experiments.trained_runs import LENET, one_error_line, read_csv, write_png
from tests.helpers import cli_env, run_cli
from tests.servers import free_port, http_post, multipart, stop, wait_healthy


def test_serve_answers_an_uploaded_image_like_predict(trained):
    folder = trained / "serve_images"
    folder.mkdir()
    image = torch.randint(0, 256, (1, 28, 28), dtype=torch.uint8)
    write_png(image, str(folder / "digit.png"))
    run_cli("predict", *LENET, "--ckpt_path", "best", "--data.predict_dir", str(folder), cwd=trained)
    _, rows = read_csv(trained / "lightning_logs/mnist_lenet/version_0/predictions/serve_images.csv")
    port = free_port()
    log = open(trained / "serve.log", "w")  # a file, not a pipe nobody reads (a full pipe would block it)
    process = subprocess.Popen([sys.executable, "-m", "experiments", "serve", *LENET, "--ckpt_path", "best",
                                "--port", str(port)], cwd=trained, env=cli_env(), stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_healthy(f"http://127.0.0.1:{port}/health", process)
        body, content_type = multipart("image", "digit.png", (folder / "digit.png").read_bytes())
        status, answer = http_post(f"http://127.0.0.1:{port}/predict", body, content_type)
        assert status == 200, answer
        assert answer["class"] == int(rows[0]["prediction"]) and answer["name"] == rows[0]["name"]
        for name, p in answer["probabilities"].items():
            assert p == pytest.approx(float(rows[0][f"p_{name}"]), abs=2e-6)
        body, content_type = multipart("image", "notes.txt", b"not an image")
        status, answer = http_post(f"http://127.0.0.1:{port}/predict", body, content_type)
        assert status == 400 and "not an image" in answer["detail"]
    finally:
        stop(process)
        log.close()


def test_serve_on_a_port_in_use_is_one_line(trained):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_error_line(run_cli("serve", *LENET, "--ckpt_path", "best", "--port", str(port), cwd=trained,
                                      check=False, timeout=120))
    assert f"--port {port}" in line and "in use" in line


