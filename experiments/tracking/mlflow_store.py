"""Where a run is tracked in MLflow, and the record in the run folder that ties both together.

MLFlowLogger is configured like any Lightning logger (``-c experiments/presets/mlflow.yaml`` or
``--trainer.logger+=MLFlowLogger``); before it is built, :func:`prepare_mlflow_loggers` fills in
what the run folder knows: the MLflow experiment (the litexp experiment's name unless set), the
tracking URI (``MLFLOW_TRACKING_URI``, else a SQLite store in ``lightning_logs/mlruns``: MLflow 3
refuses its old file store), and, for a run that already has an MLflow run (a resumed fit, a test),
that run's id. A server that does not answer is a one-line error before any run folder is made,
not the minutes of retries MLflow's client would spend.

``<run>/mlflow.json`` (:class:`MlflowRecord`) is written once the MLflow run exists; test, predict
and export of the run find their MLflow run through it even when their command names no logger.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from experiments.redact import mask_secrets, mask_url
from experiments.runs.folder import LOGS, MLRUNS, RunFolder

#: MLFlowLogger's default experiment name, replaced by the litexp experiment's
LIGHTNING_DEFAULT_EXPERIMENT = "lightning_logs"
#: seconds to wait for a tracking server's /health before calling it unreachable
ANSWER_TIMEOUT_S = 5.0
OPTION = "--trainer.logger MLFlowLogger"


@dataclass(frozen=True)
class MlflowRecord:
    """The MLflow run a litexp run logs into (``<run>/mlflow.json``)."""

    tracking_uri: str
    experiment_id: str
    run_id: str

    @classmethod
    def read(cls, run: RunFolder | None) -> MlflowRecord | None:
        """The MLflow run a run folder was tracked to (None when it was not, or the record is unreadable)."""
        if run is None or not run.mlflow_record.is_file():
            return None
        try:
            data = json.loads(run.mlflow_record.read_text())
            return cls(str(data["tracking_uri"]), str(data["experiment_id"]), str(data["run_id"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None  # unreadable: the run is evaluated without MLflow rather than not at all

    def write(self, run: RunFolder) -> None:
        """Through a temporary file and a rename: never half-written."""
        temporary = run.mlflow_record.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(asdict(self), indent=2) + "\n")
        os.replace(temporary, run.mlflow_record)


def pending_run_name(experiment: str) -> str:
    """The name a new MLflow run starts with until the run folder's version is known (then ``version_N``)."""
    return f"{experiment}/version_?"


def is_mlflow_logger(logger: Any) -> bool:
    """A logger object, or the class path of one in a config, that is Lightning's MLFlowLogger (or a subclass)."""
    from lightning.pytorch.loggers import MLFlowLogger

    if isinstance(logger, str):
        module, _, name = logger.rpartition(".")
        if not module:
            return name == "MLFlowLogger"
        try:
            found = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            return False
        return isinstance(found, type) and issubclass(found, MLFlowLogger)
    return isinstance(logger, MLFlowLogger)


def default_store(root: str | os.PathLike) -> tuple[str, str]:
    """(tracking URI, artifact location) of the local store: ``<root>/lightning_logs/mlruns``."""
    mlruns = (Path(root) / LOGS / MLRUNS).resolve()
    return f"sqlite:///{mlruns / 'mlflow.db'}", str(mlruns / "artifacts")


def require_mlflow(option: str) -> None:
    """Check that MLflow is installed.

    Raises:
        ValueError: it is not (the message names ``option`` and the extra that installs it).
    """
    if importlib.util.find_spec("mlflow") is None:
        raise ValueError(f"{option}: MLflow is not installed; pip install 'litexp[tracking]' (or mlflow)")


def health_request(uri: str) -> urllib.request.Request:
    """``GET <uri>/health`` with the credentials as MLflow's client sends them: a ``user:password@`` in the URI
    as HTTP basic auth (requests' rule) with the URI itself freed of them, else ``MLFLOW_TRACKING_USERNAME`` /
    ``MLFLOW_TRACKING_PASSWORD`` as basic auth, else ``MLFLOW_TRACKING_TOKEN`` as a bearer token.

    Returns:
        The request, its URL without credentials (urllib would take ``user:password@host`` for a host name).
    """
    parts = urllib.parse.urlsplit(uri)
    host = parts.netloc.rpartition("@")[2]
    url = urllib.parse.urlunsplit((parts.scheme, host, parts.path.rstrip("/") + "/health", "", ""))
    headers = {}
    if parts.username is not None:
        user, password = urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password or "")
    elif os.environ.get("MLFLOW_TRACKING_USERNAME"):
        user, password = os.environ["MLFLOW_TRACKING_USERNAME"], os.environ.get("MLFLOW_TRACKING_PASSWORD", "")
    else:
        user = password = None
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        headers["Authorization"] = f"Basic {token}"
    elif os.environ.get("MLFLOW_TRACKING_TOKEN"):
        headers["Authorization"] = f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}"
    return urllib.request.Request(url, headers=headers)


def check_answers(uri: str, option: str) -> None:
    """An http(s) tracking server must answer ``/health`` within a few seconds; other URIs are local.

    Raises:
        ConnectionError: nothing answers; one line, the URI's password masked.
    """
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(health_request(uri), timeout=ANSWER_TIMEOUT_S):
            return
    except urllib.error.HTTPError:
        return  # it answered (a proxy or an authenticating server may refuse /health): the client will tell
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", None) or err
        raise ConnectionError(mask_secrets(
            f"{option} {uri}: no MLflow server answers ({reason}); start it (mlflow server --host 127.0.0.1 "
            "--port 5000), or set MLFLOW_TRACKING_URI / tracking_uri to one that runs", uri)) from None


def prepare_mlflow(entries: list[Any], root: str | os.PathLike, experiment: str, run: RunFolder | None) -> None:
    """Fill in the MLFlowLogger entries of a parsed config before they are built (see the module's docstring)."""
    entries = [e for e in entries if is_mlflow_logger(str(e.get("class_path") or ""))]
    if not entries:
        return
    require_mlflow(OPTION)
    record = MlflowRecord.read(run)
    uri, artifacts = default_store(root)
    local = False
    for entry in entries:
        init = entry.init_args
        if not init.get("tracking_uri"):
            init.tracking_uri = os.environ.get("MLFLOW_TRACKING_URI") or uri
        if init.tracking_uri == uri:
            local = True
            init.artifact_location = init.get("artifact_location") or artifacts
        if init.get("experiment_name") in (None, LIGHTNING_DEFAULT_EXPERIMENT):
            init.experiment_name = experiment
        if record is not None and not init.get("run_id") and record.tracking_uri == init.tracking_uri:
            init.run_id = record.run_id
        if not init.get("run_id") and init.get("run_name") is None:
            init.run_name = pending_run_name(experiment)
        check_answers(init.tracking_uri, f"{OPTION} tracking_uri")
    if local:
        Path(artifacts).parent.mkdir(parents=True, exist_ok=True)


def recorded_logger(run: RunFolder | None, loggers: list[Any]) -> Any | None:
    """An MLFlowLogger into the run's recorded MLflow run, for a command on that run that configures none
    (``test``, ``predict``, a resumed ``fit``); None when there is no record or a logger is configured.
    """
    record = MlflowRecord.read(run)
    if record is None or any(is_mlflow_logger(lg) for lg in loggers):
        return None
    where = f"the MLflow run recorded in {run.mlflow_record}"
    require_mlflow(where)
    check_answers(record.tracking_uri, where)
    from lightning.pytorch.loggers import MLFlowLogger

    return MLFlowLogger(tracking_uri=record.tracking_uri, run_id=record.run_id)


def log_to_recorded_run(run: RunFolder | None, paths: list[Path], artifact_path: str) -> str | None:
    """Files (``export``'s) as artifacts of the run's MLflow run: the line to print, or None without a record.

    The files are already written when this runs, so a tracker that fails is reported, not raised.
    """
    record = MlflowRecord.read(run)
    if record is None:
        return None
    try:
        require_mlflow(f"the MLflow run recorded in {run.mlflow_record}")
        check_answers(record.tracking_uri, "MLflow")
        from mlflow import MlflowClient

        client = MlflowClient(record.tracking_uri)
        for path in paths:
            client.log_artifact(record.run_id, str(path), artifact_path)
    except Exception as err:  # noqa: BLE001 - any tracker failure leaves the export itself intact
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        first = mask_secrets(first, record.tracking_uri)
        return f"Not logged to MLflow run {record.run_id} ({first})"
    return f"Logged to MLflow run {record.run_id} ({mask_url(record.tracking_uri)}) under {artifact_path}/"
