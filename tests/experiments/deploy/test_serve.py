"""serve answers over HTTP on 127.0.0.1 as predict does; refuses what it cannot take with the reason; stops
on SIGTERM and Ctrl-C with every worker gone; a port in use is one line.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from tests.experiments.trained_runs import LENET, SIN, one_error_line, read_csv, write_png
from tests.helpers import cli_env, default_sigint, run_cli
from tests.image_bombs import huge_png
from tests.servers import (
    free_port,
    http_get,
    http_post,
    live_processes_in_group,
    multipart,
    port_is_free,
    stop,
    wait_group_gone,
    wait_healthy,
)


@pytest.mark.server
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




def _start(trained, args: list[str], port: int, log_name: str,
           headers: dict[str, str] | None = None, ckpt_path: str = "best") -> tuple[subprocess.Popen, object]:
    log = open(trained / log_name, "w")  # a file, not a pipe nobody reads
    process = subprocess.Popen([sys.executable, "-m", "experiments", "serve", *args, "--ckpt_path", ckpt_path,
                                "--port", str(port)], cwd=trained, env=cli_env(), stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=default_sigint)
    wait_healthy(f"http://127.0.0.1:{port}/health", process, headers=headers)
    return process, log


@pytest.mark.server
def test_serve_refuses_what_it_cannot_take_with_the_reason(trained):
    port = free_port()
    process, log = _start(trained, [*LENET, "--max_upload_mb", "1", "--max_image_pixels", "1000000",
                                    "--api_key", "test-key"], port, "serve_limits.log", {"X-API-Key": "test-key"})
    url = f"http://127.0.0.1:{port}/predict"
    key = {"X-API-Key": "test-key"}
    picture = io.BytesIO()
    from PIL import Image

    Image.new("L", (28, 28), 200).save(picture, format="PNG")
    try:
        body, content_type = multipart("image", "digit.png", picture.getvalue())
        status, answer = http_post(url, body, content_type)
        assert status == 401 and "X-API-Key" in answer["detail"]
        status, answer = http_post(url, body, content_type, headers={"X-API-Key": "wrong"})
        assert status == 401
        status, answer = http_post(url, body, content_type, headers=key)
        assert status == 200 and 0 <= answer["class"] < 10
        status, answer = http_post(url, b"{not json", "application/json", headers=key)
        assert status == 400 and "not valid JSON" in answer["detail"]
        status, answer = http_post(url, *multipart("image", "bomb.png", huge_png(13000, 13000)), headers=key)
        assert status == 413 and "169 megapixels" in answer["detail"] and "--max_image_pixels" in answer["detail"]
        status, answer = http_post(url, *multipart("image", "big.png", b"\0" * (2 * 2**20)), headers=key)
        assert status == 413 and "--max_upload_mb" in answer["detail"]
        status, answer = http_post(url, *multipart("photo", "digit.png", picture.getvalue()), headers=key)
        assert status == 400 and "no file field named image (fields: photo)" in answer["detail"]
        assert http_get(f"http://127.0.0.1:{port}/health")[0] == 401  # LitServe guards every route with it
        for page in ("/docs", "/redoc", "/openapi.json"):  # FastAPI's own pages too
            assert http_get(f"http://127.0.0.1:{port}{page}")[0] == 401, page
            assert http_get(f"http://127.0.0.1:{port}{page}", headers=key)[0] == 200, page
        body, _ = multipart("image", "digit.png", picture.getvalue())
        status, answer = http_post(url, body, "multipart/form-data", headers=key)  # no boundary
        assert status == 400 and "boundary" in answer["detail"]
        assert process.poll() is None  # none of it took the server down
    finally:
        stop(process)
        log.close()


@pytest.mark.server
@pytest.mark.parametrize("how", ["SIGTERM to the process", "Ctrl-C to the process group"])
def test_serve_stops_with_every_worker_and_the_port_freed(trained, how):
    port = free_port()
    process, log = _start(trained, SIN, port, f"serve_stop_{how[:7]}.log")
    try:
        assert len(live_processes_in_group(process.pid)) >= 3  # the server, its HTTP and inference workers
        if how.startswith("SIGTERM"):
            process.send_signal(signal.SIGTERM)
        else:
            os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=30) == 0
        assert wait_group_gone(process.pid, 10) == [] and port_is_free(port)
    finally:
        stop(process)
        log.close()
    output = (trained / f"serve_stop_{how[:7]}.log").read_text()
    assert "Traceback" not in output and output.count("Stopped serving") == 1, output[-3000:]


@pytest.mark.process
def test_without_the_extra_serve_says_what_to_install(tmp_path):
    # a fresh interpreter where litserve and fastapi cannot be imported
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('litserve', 'fastapi'):\n"
        "            raise ImportError('not installed')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import experiments.deploy.serve as serve\n"
        "serve.require_litserve()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=cli_env(), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0 and "ValueError: serve needs litserve, which is not installed: pip install" \
        in result.stderr, result.stderr[-2000:]


@pytest.mark.server
def test_a_bad_request_fails_alone_in_its_batch(trained):
    """Nine images, one junk file and one bomb sent together to a server batching up to 16: every image gets its
    answer, equal to the one it gets alone; the junk gets 400 and the bomb 413.
    """
    port = free_port()
    process, log = _start(trained, [*LENET, "--max_batch_size", "16", "--max_image_pixels", "1000000"], port,
                          "serve_batch.log")
    url = f"http://127.0.0.1:{port}/predict"
    from PIL import Image

    images = []
    for shade in range(9):
        picture = io.BytesIO()
        Image.new("L", (28, 28), 25 * shade).save(picture, format="PNG")
        images.append(multipart("image", f"{shade}.png", picture.getvalue()))
    junk = multipart("image", "notes.txt", b"not an image")
    bomb = multipart("image", "bomb.png", huge_png(13000, 13000))
    try:
        alone = [http_post(url, *body) for body in images]
        assert all(status == 200 for status, _ in alone)
        for _ in range(3):  # sent together, so that they share batches
            with ThreadPoolExecutor(max_workers=11) as pool:
                answers = list(pool.map(lambda body: http_post(url, *body), [*images[:5], junk, *images[5:], bomb]))
            statuses = [status for status, _ in answers]
            assert statuses == [200] * 5 + [400] + [200] * 4 + [413], statuses
            assert "not an image" in answers[5][1]["detail"] and "--max_image_pixels" in answers[10][1]["detail"]
            got = [answer for status, answer in answers if status == 200]
            for (_, single), batched in zip(alone, got, strict=True):
                assert batched["class"] == single["class"]
                assert batched["probability"] == pytest.approx(single["probability"], abs=1e-5)
        assert process.poll() is None
    finally:
        stop(process)
        log.close()


@pytest.mark.server
def test_the_workers_end_when_the_serving_process_is_killed(trained):
    port = free_port()
    process, log = _start(trained, SIN, port, "serve_sigkill.log")
    try:
        workers = [pid for pid in live_processes_in_group(process.pid) if pid != process.pid]
        assert len(workers) >= 2  # its HTTP and inference workers
        process.kill()  # SIGKILL to the serving process alone: no handler, no clean-up of its own
        process.wait(timeout=30)
        assert wait_group_gone(process.pid, 20) == [] and port_is_free(port)
    finally:
        stop(process)
        log.close()
