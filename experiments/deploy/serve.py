"""``serve``: a checkpoint's predictions over HTTP, with LitServe (Lightning's serving engine).

The model served is the task's inference module (:mod:`lit_models.inference`), the same one
``export`` writes. Requests arriving together are batched into one forward pass (``max_batch_size``).
What a request carries and what the answer holds follow the task's inference contract:

- image input: ``POST /predict`` with the image as a multipart form field (``curl -F image=@cat.png``),
  or JSON ``{"image_base64": "..."}``; decoded and converted to the model's channels and raw size.
- tensor input: JSON ``{"<input name>": [numbers]}`` (sin(1/x): ``{"x": [0.1, 0.5]}``), one or more samples.
- probabilities out: ``{"class", "name", "probability", "probabilities": {name: p}}``.
- values out: ``{"<input name>": [...], "<output name>": [...]}`` (with the labels, when named).
"""

from __future__ import annotations

import base64
import socket
from typing import Any

import torch

from datamodules.image_files import load_image
from experiments.deploy import inference
from lit_models.inference import Inference
from lit_models.task import Task

try:
    import litserve
except ImportError:  # an optional extra: serve says what to install
    litserve = None

EXTRA_HINT = 'pip install "litserve>=0.2.10" (or: pip install -e ".[results]" in the project)'
_LitAPI: Any = litserve.LitAPI if litserve is not None else object


def require_litserve() -> Any:
    if litserve is None:
        raise ValueError(f"serve needs litserve, which is not installed: {EXTRA_HINT}")
    return litserve


class BadRequest(ValueError):
    """A request the model cannot take; answered with HTTP 400 and the reason."""


def decode_image_bytes(data: bytes, shape: list[int]) -> torch.Tensor:
    """Encoded image bytes -> uint8 (1, C, H, W) of the data set's channels and raw size (as predict reads files)."""
    try:
        return load_image(data, tuple(shape)).unsqueeze(0)
    except ValueError:
        raise BadRequest("the upload is not an image (PNG, JPEG, or another format PIL reads)") from None


class PredictionAPI(_LitAPI):
    """The LitAPI: decode a request, batch, run the inference module, answer in JSON.

    Defined at module level: LitServe pickles it into its inference worker processes.
    """

    def __init__(self, shipped: Inference, max_batch_size: int = 1) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=0.005 if max_batch_size > 1 else 0.0)
        self.shipped = shipped

    def setup(self, device: str) -> None:
        self.device = torch.device(device)
        self.model = self.shipped.module.to(self.device).eval()

    def decode_request(self, request) -> torch.Tensor:  # no annotation: LitServe then hands over the parsed body
        try:
            if self.shipped.input_kind == "image":
                return decode_image_bytes(_image_bytes(request), list(self.shipped.input_shape))
            return _tensor_input(request, self.shipped)
        except (BadRequest, TypeError, ValueError, RuntimeError) as err:
            from fastapi import HTTPException

            raise HTTPException(status_code=400, detail=str(err)) from None

    def batch(self, inputs: list[torch.Tensor]) -> tuple[torch.Tensor, list[int]]:
        return torch.cat(inputs), [len(i) for i in inputs]

    def predict(self, x: Any) -> tuple:
        batch, sizes = x if isinstance(x, tuple) else (x, None)
        with torch.inference_mode():
            out = self.model(batch.to(self.device)).float().cpu()
        return (out, batch.cpu()) if sizes is None else (out, sizes, batch.cpu())

    def unbatch(self, output: tuple[torch.Tensor, list[int], torch.Tensor]) -> list[tuple]:
        out, sizes, inputs = output
        return list(zip(out.split(sizes), inputs.split(sizes), strict=True))

    def encode_response(self, output: tuple[torch.Tensor, torch.Tensor]) -> dict[str, Any]:
        out, inputs = output
        shipped = self.shipped
        if shipped.output_kind == "probabilities":
            names = shipped.labels or [str(i) for i in range(out.shape[1])]
            p = out[0]
            k = int(p.argmax())
            return {"class": k, "name": names[k], "probability": float(p[k]),
                    "probabilities": {name: float(v) for name, v in zip(names, p.tolist(), strict=True)}}
        answer = {shipped.input_name: _plain(inputs, shipped.input_shape), shipped.output_name: _plain(out)}
        if shipped.labels:
            answer["labels"] = list(shipped.labels)
        return answer


def _plain(values: torch.Tensor, sample_shape: tuple[int, ...] | None = None) -> list:
    """Rows as JSON lists; one number per sample becomes a flat list (``{"x": [0.1, 0.5]}``)."""
    if values.dim() == 2 and values.shape[1] == 1 and (sample_shape is None or tuple(sample_shape) == (1,)):
        return values.flatten().tolist()
    return values.tolist()


def _tensor_input(request: Any, shipped: Inference) -> torch.Tensor:
    """JSON ``{"<input name>": numbers}`` as a batch of the model's sample shape."""
    name, shape = shipped.input_name, tuple(shipped.input_shape)
    example = "[0.1, 0.5]" if shape == (1,) else f"a list of samples of shape {list(shape)}"
    values = request.get(name) if hasattr(request, "get") else None
    if values is None:
        raise BadRequest(f'send JSON {{"{name}": {example}}}')
    x = torch.tensor(values if isinstance(values, list) else [values], dtype=shipped.input_dtype)
    size = 1
    for n in shape:
        size *= n
    if not x.numel() or x.numel() % size or not torch.isfinite(x).all():
        raise BadRequest(f'send JSON {{"{name}": {example}}} of finite numbers')
    if shape != (1,) and tuple(x.shape[1:]) != shape:
        raise BadRequest(f"{name}: each sample must have shape {list(shape)}, got {list(x.shape[1:])}")
    return x.reshape(-1, *shape)


def _image_bytes(request: Any) -> bytes:
    """The image of a request: the first file of a multipart form, or JSON ``image_base64``."""
    if hasattr(request, "multi_items"):  # a multipart form
        for _, value in request.multi_items():
            if hasattr(value, "file"):
                return value.file.read()
        raise BadRequest("the form has no file; send the image as a file field, e.g. curl -F image=@picture.png")
    if isinstance(request, dict) and isinstance(request.get("image_base64"), str):
        try:
            return base64.b64decode(request["image_base64"], validate=True)
        except ValueError:
            raise BadRequest("image_base64 is not valid base64") from None
    raise BadRequest('send the image as a multipart file field (curl -F image=@picture.png) or as JSON '
                     '{"image_base64": ...}')


def check_port_free(host: str, port: int) -> None:
    """One line, before any model is loaded, when the address is taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as err:
            raise OSError(f"--port {port}: cannot listen on {host}:{port} ({err.strerror or err}); "
                          "pass a free --port") from None


def serve_checkpoint(task: Task, datamodule: Any, ckpt_path: str, host: str, port: int, max_batch_size: int,
                     timeout: float) -> None:
    litserve = require_litserve()
    if not 0 < port < 65536:
        raise ValueError(f"--port must be in 1..65535, got {port}")
    if max_batch_size < 1:
        raise ValueError(f"--max_batch_size must be >= 1, got {max_batch_size}")
    check_port_free(host, port)
    inference.load_net_weights(task, ckpt_path)
    shipped = inference.prepare(task, datamodule)
    server = litserve.LitServer(PredictionAPI(shipped, max_batch_size), accelerator="auto", timeout=timeout)
    what = ("an image (curl -F image=@picture.png)" if shipped.input_kind == "image"
            else f'JSON {{"{shipped.input_name}": [...]}}')
    print(f"Serving {ckpt_path} on http://{host}:{port}/predict: POST {what}; GET /health; Ctrl-C stops",
          flush=True)
    server.run(host=host, port=port, generate_client_file=False, log_level="warning")
