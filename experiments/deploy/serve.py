"""``serve``: a checkpoint's predictions over HTTP, with LitServe (Lightning's serving engine).

The model served is the task's inference module (:mod:`lit_models.inference`), the same one
``export`` writes. Requests arriving together are batched into one forward pass (``max_batch_size``).
What a request carries and what the answer holds follow the task's inference contract:

- image input: ``POST /predict`` with the image as the multipart form field ``image`` (``curl -F
  image=@cat.png``), or JSON ``{"image_base64": "..."}``; decoded (any bit depth, mode and EXIF
  orientation, see :mod:`datamodules.images.files`) and converted to the model's channels and raw size.
- tensor input: JSON ``{"<input name>": [numbers]}`` (sin(1/x): ``{"x": [0.1, 0.5]}``), one or more samples.
- probabilities out: ``{"class", "name", "probability", "probabilities": {name: p}}``.
- values out: ``{"<input name>": [...], "<output name>": [...]}`` (with the labels, when named).

Refused with the reason: malformed JSON (400), a body over ``max_upload_mb`` (413), an image over
``max_image_pixels`` (413, judged from its header: nothing decoded), a request without the API key when
one is set (401, LitServe's ``authorize`` hook on the ``X-API-Key`` header). SIGTERM (systemd, Docker,
``kill``) stops it as Ctrl-C does: every worker ends and the port is free when the command returns.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from typing_extensions import override

from datamodules.images.files import ImageTooLarge, load_image
from datamodules.images.preparation import DEFAULT_MAX_PIXELS
from experiments.deploy import inference
from experiments.deploy.http_limits import KEY_REFUSED, RequestChecks, key_matches
from experiments.deploy.parent_death import die_with_parent, forks_die_with
from lit_models.inference import Inference

if TYPE_CHECKING:  # a serve worker unpickles the API without importing Lightning
    from lit_models.task import Task

try:
    import litserve
    from fastapi import Depends, HTTPException
    from fastapi.security import APIKeyHeader
    from starlette.responses import JSONResponse
except ImportError:  # an optional extra: serve says what to install (require_litserve)
    litserve = None

    def Depends(dependency: Any = None) -> None:  # noqa: N802 - FastAPI's name, so the class below still defines
        """Stand-in for FastAPI's ``Depends`` where FastAPI is not installed."""
        return None

API_KEY_ENV = "LIT_SERVER_API_KEY"  # LitServe's own variable for the same header
_API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False) if litserve is not None else None

EXTRA_HINT = 'pip install "litserve>=0.2.10" (or: pip install -e ".[results]" in the project)'
_LitAPI: Any = litserve.LitAPI if litserve is not None else object


def require_litserve() -> Any:
    """The ``litserve`` package.

    Raises:
        ValueError: it is not installed (the message says which extra installs it).
    """
    if litserve is None:
        raise ValueError(f"serve needs litserve, which is not installed: {EXTRA_HINT}")
    return litserve


class BadRequest(ValueError):
    """A request the model cannot take; answered with HTTP 400 and the reason."""


class TooLarge(BadRequest):
    """Over a size limit; answered with HTTP 413 and the reason."""


@dataclass(frozen=True)
class Refused:
    """A request's answer decided while decoding it (status and reason): carried through batch, predict and
    unbatch in its place and answered on its own (a response object passes LitServe's loop as any answer).
    """

    status: int
    detail: str


def decode_image_bytes(data: bytes, shape: list[int], max_pixels: int = DEFAULT_MAX_PIXELS,
                       rule: str = "stretch") -> torch.Tensor:
    """Encoded image bytes -> uint8 (1, C, H, W) of the data set's channels and raw size, resized by the data's
    ``rule`` (as predict reads files: a photo for a folder-trained model keeps its aspect ratio).
    """
    try:
        return load_image(data, tuple(shape), max_pixels, rule=rule).unsqueeze(0)
    except ImageTooLarge as err:
        raise TooLarge(f"the image is too large: {err} (--max_image_pixels)") from None
    except ValueError:
        raise BadRequest("the upload is not an image (PNG, JPEG, or another format PIL reads)") from None


class PredictionAPI(_LitAPI):
    """The LitAPI: decode a request, batch, run the inference module, answer in JSON.

    Defined at module level: LitServe pickles it into its inference worker processes.
    """

    def __init__(self, shipped: Inference, max_batch_size: int = 1, max_image_pixels: int = DEFAULT_MAX_PIXELS,
                 api_key: str | None = None) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=0.005 if max_batch_size > 1 else 0.0)
        self.shipped = shipped
        self.max_image_pixels = max_image_pixels
        self.api_key = api_key
        self.server_pid = os.getpid()  # the serving process, which this API is built in and pickled from

    def authorize(self, key: str | None = Depends(_API_KEY_HEADER)) -> None:
        """LitServe's per-API authentication hook: a FastAPI dependency LitServe puts on every route it serves
        (``/health`` included), a no-op without a key.
        """
        if not key_matches(key, self.api_key):
            raise HTTPException(status_code=401, detail=KEY_REFUSED)

    @override
    def setup(self, device: str) -> None:
        """In the inference worker: end with the serving process (see ``parent_death``), then load the model."""
        if os.getpid() != self.server_pid:
            die_with_parent(self.server_pid)
        self.device = torch.device(device)
        self.model = self.shipped.module.to(self.device).eval()

    @override
    def decode_request(self, request) -> torch.Tensor | Refused:  # no annotation on request: the parsed body
        """Each request decoded and checked on its own: a bad one becomes its ``Refused`` answer instead of an
        exception, which LitServe's batched loop would turn into an error for every request batched with it.
        """
        try:
            if self.shipped.input_kind == "image":
                return decode_image_bytes(_image_bytes(request), list(self.shipped.input_shape),
                                          self.max_image_pixels,
                                          (self.shipped.preprocessing or {}).get("resize_rule", "stretch"))
            return _tensor_input(request, self.shipped)
        except TooLarge as err:
            return Refused(413, str(err))
        except (BadRequest, TypeError, ValueError, RuntimeError) as err:
            return Refused(400, str(err))

    @override
    def batch(self, inputs: list[torch.Tensor | Refused]) -> tuple[torch.Tensor | None, list[int | Refused]]:
        """The valid inputs as one batch; per request, its sample count or its refusal."""
        valid = [x for x in inputs if isinstance(x, torch.Tensor)]
        sizes = [len(x) if isinstance(x, torch.Tensor) else x for x in inputs]
        return (torch.cat(valid) if valid else None), sizes

    @override
    def predict(self, x: Any) -> Any:
        if isinstance(x, Refused):  # one request at a time (max_batch_size 1): nothing to run
            return x
        batch, sizes = x if isinstance(x, tuple) else (x, None)
        if batch is None:  # every request of the batch refused
            return None, sizes, None
        with torch.inference_mode():
            out = self.model(batch.to(self.device)).float().cpu()
        return (out, batch.cpu()) if sizes is None else (out, sizes, batch.cpu())

    @override
    def unbatch(self, output: tuple) -> list[tuple | Refused]:
        out, sizes, inputs = output
        answers, start = [], 0
        for size in sizes:
            if isinstance(size, Refused):
                answers.append(size)
                continue
            answers.append((out[start:start + size], inputs[start:start + size]))
            start += size
        return answers

    @override
    def encode_response(self, output: tuple[torch.Tensor, torch.Tensor] | Refused) -> Any:
        if isinstance(output, Refused):
            return JSONResponse({"detail": output.detail}, status_code=output.status)
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
    """The image of a request: the multipart form's ``image`` file field, or JSON ``image_base64``."""
    if hasattr(request, "multi_items"):  # a multipart form
        value = request.get("image")
        if hasattr(value, "file"):
            return value.file.read()
        fields = ", ".join(sorted({key for key, _ in request.multi_items()})) or "none"
        raise BadRequest(f"the form has no file field named image (fields: {fields}); send "
                         "curl -F image=@picture.png")
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


def _server_class(litserve: Any) -> Any:
    class Server(litserve.LitServer):
        """LitServer whose inference workers leave Ctrl-C to the serving process: a terminal's Ctrl-C reaches
        the whole process group, and each spawned worker would print its own KeyboardInterrupt traceback;
        the serving process stops them (SIGTERM) during LitServe's graceful shutdown. An ignored SIGINT
        is inherited through spawn's exec, and Python then installs no handler of its own.
        """

        def launch_inference_worker(self, lit_api: Any) -> Any:
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                return super().launch_inference_worker(lit_api)
            finally:
                signal.signal(signal.SIGINT, previous)

    return Server


class _StopRequested(KeyboardInterrupt):
    """SIGTERM, turned into what LitServe's ``run`` already stops on gracefully (Ctrl-C)."""


def _stop_on_sigterm_in(pid: int) -> Any:
    """A SIGTERM handler for the serving process only: LitServe's forked HTTP workers inherit it, and uvicorn
    re-raises the signal it caught through it when it stops: there it does what SIGTERM does by default.
    """

    def handler(signum: int, frame: Any) -> None:
        if os.getpid() == pid:
            raise _StopRequested
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    return handler


def serve_checkpoint(task: Task, datamodule: Any, ckpt_path: str, host: str, port: int, max_batch_size: int,
                     timeout: float, max_upload_mb: float = 10.0, max_image_pixels: int = DEFAULT_MAX_PIXELS,
                     api_key: str | None = None) -> None:
    """Serve a checkpoint over HTTP until interrupted (LitServe on ``host:port``).

    Raises:
        ValueError: a bad option (port, batch size, timeout, limits) or litserve missing; one line each.
    """
    litserve = require_litserve()
    if not 0 < port < 65536:
        raise ValueError(f"--port must be in 1..65535, got {port}")
    if max_batch_size < 1:
        raise ValueError(f"--max_batch_size must be >= 1, got {max_batch_size}")
    if not max_upload_mb > 0 or max_image_pixels < 1:
        raise ValueError(f"--max_upload_mb must be > 0 and --max_image_pixels >= 1, got {max_upload_mb} and "
                         f"{max_image_pixels}")
    api_key = api_key or os.environ.get(API_KEY_ENV) or None
    check_port_free(host, port)
    inference.load_net_weights(task, ckpt_path)
    shipped = inference.prepare(task, datamodule)
    max_bytes = int(max_upload_mb * 2**20)
    server = _server_class(litserve)(PredictionAPI(shipped, max_batch_size, max_image_pixels, api_key),
                                           accelerator="auto", timeout=timeout, max_payload_size=max_bytes,
                                           middlewares=[(RequestChecks, {"max_bytes": max_bytes, "api_key": api_key})])
    what = ("an image (curl -F image=@picture.png)" if shipped.input_kind == "image"
            else f'JSON {{"{shipped.input_name}": [...]}}')
    key = "; X-API-Key header required" if api_key else ""
    print(f"Serving {ckpt_path} on http://{host}:{port}/predict: POST {what}{key}; GET /health; "
          "Ctrl-C or SIGTERM stops", flush=True)
    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm_in(os.getpid()))
    forks_die_with(os.getpid())  # the HTTP workers LitServe forks
    try:
        server.run(host=host, port=port, generate_client_file=False, log_level="warning")
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(f"Stopped serving on {host}:{port}: every worker ended", flush=True)
