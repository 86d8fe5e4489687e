"""A real MLflow tracking server for the tests of this package: SQLite backend store and a local artifact
root under a temporary folder, on a free port of 127.0.0.1, stopped (with its workers) at the end.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.servers import free_port, stop, wait_healthy


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("mlflow_server")
    port = free_port()
    log = open(folder / "server.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
         "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        cwd=folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_healthy(f"{uri}/health", process, limit=120)
        except AssertionError as err:
            log.flush()
            raise AssertionError(f"{err}; server log:\n{(folder / 'server.log').read_text()[-3000:]}") from None
        yield uri
    finally:
        stop(process)
        log.close()
