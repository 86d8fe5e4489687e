"""``serve``'s throughput with batching against one request at a time, bad requests mixed in:
``python -m benchmarks.serve_batching``.

A LeNet-5 checkpoint (trained for a few steps on synthetic MNIST files: speed does not depend on the weights)
is served twice on 127.0.0.1, with ``--max_batch_size 1`` and with ``--max_batch_size N``; the same client
threads post the same requests to each (PNG uploads, every ``--junk_every``-th one a text file). Reported per
server: valid requests answered per second, and how many valid ones got 200 and junk ones 400. Both servers run
in turn on this machine, so only their ratio carries over to another one.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from datamodules.bundled.synthetic import write_mnist

ROOT = Path(__file__).resolve().parents[1]
LENET = ["-c", str(ROOT / "experiments/mnist_lenet.yaml"), "--data.init_args.download", "false",
         "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, upload: tuple[str, bytes]) -> int:
    return requests.post(url, files={"image": upload}, timeout=60).status_code


def _requests(count: int, junk_every: int) -> list[tuple[bool, tuple[str, bytes]]]:
    from PIL import Image

    made = []
    for i in range(count):
        if junk_every and i % junk_every == junk_every - 1:
            made.append((False, (f"{i}.txt", b"not an image")))
            continue
        picture = io.BytesIO()
        Image.new("L", (28, 28), (37 * i) % 256).save(picture, format="PNG")
        made.append((True, (f"{i}.png", picture.getvalue())))
    return made


def _measure(folder: Path, batch: int, uploads: list, clients: int) -> dict[str, float]:
    port = _free_port()
    log = open(folder / f"serve_{batch}.log", "w")
    process = subprocess.Popen([sys.executable, "-m", "experiments", "serve", *LENET, "--ckpt_path", "best",
                                "--port", str(port), "--max_batch_size", str(batch)], cwd=folder, env=_env(),
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/predict"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.3)
        else:
            raise RuntimeError(f"the server did not start; see {log.name}")
        with ThreadPoolExecutor(max_workers=clients) as pool:
            list(pool.map(lambda r: _post(url, r[1]), uploads[:clients]))  # warm-up
            start = time.perf_counter()
            statuses = list(pool.map(lambda r: _post(url, r[1]), uploads))
            wall = time.perf_counter() - start
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
        log.close()
    valid = [status for (good, _), status in zip(uploads, statuses, strict=True) if good]
    junk = [status for (good, _), status in zip(uploads, statuses, strict=True) if not good]
    answered = sum(s == 200 for s in valid)
    return {"batch": batch, "valid_per_s": answered / wall, "valid_ok": answered, "valid": len(valid),
            "junk_400": sum(s == 400 for s in junk), "junk": len(junk), "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serve_batching", description=__doc__)
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--max_batch_size", type=int, default=16)
    parser.add_argument("--junk_every", type=int, default=10, help="every N-th request is not an image (0: none)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        write_mnist(folder / "data", n_train=512, n_test=64)
        subprocess.run([sys.executable, "-m", "experiments", "fit", *LENET, "--data.init_args.data_dir",
                        str(folder / "data"), "--trainer.max_steps", "4"], cwd=folder, env=_env(), check=True,
                       capture_output=True, timeout=600)
        uploads = _requests(args.requests, args.junk_every)
        rows = [_measure(folder, batch, uploads, args.clients) for batch in (1, args.max_batch_size)]
    junk = f"every {args.junk_every}th one junk" if args.junk_every else "no junk"
    print(f"{args.requests} requests from {args.clients} client threads, {junk} ({os.cpu_count()} CPUs)")
    for row in rows:
        print(f"--max_batch_size {row['batch']:>3}: {row['valid_per_s']:7.1f} valid requests/s answered; "
              f"valid 200: {row['valid_ok']}/{row['valid']}, junk 400: {row['junk_400']}/{row['junk']}")
    print(f"batched / one at a time: {rows[1]['valid_per_s'] / rows[0]['valid_per_s']:.2f}x")


if __name__ == "__main__":
    main()
