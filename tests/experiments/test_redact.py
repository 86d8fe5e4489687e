"""No password on a terminal: database and tracking URLs masked, malformed ones included, and the MLflow health
check sending the credentials as MLflow's client does (a real HTTP server on 127.0.0.1 records them).
"""

from __future__ import annotations

import base64
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from experiments.entry import main
from experiments.redact import mask_secrets, mask_url
from experiments.tracking.mlflow_store import check_answers
from tests.helpers import EXPERIMENTS
from tests.servers import free_port

SIN = ["-c", str(EXPERIMENTS / "sin_mlp.yaml"), "--sweep", str(EXPERIMENTS / "sweeps" / "sin_mlp.yaml")]


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://litexp:Secret9@db:5432/x", "postgresql://litexp:***@db:5432/x"),
    ("postgresql://litexp:Se@cr@et9@db/x", "postgresql://litexp:***@db/x"),  # '@' in the password
    ("postgresql://litexp:Se/cr:et9@db/x", "postgresql://litexp:***@db/x"),  # '/' and ':' in it
    ("http://alice:Secret9@127.0.0.1:5000", "http://alice:***@127.0.0.1:5000"),
    ("postgresql://litexp@db/x", "postgresql://litexp@db/x"),  # a user, no password: nothing to hide
    ("sqlite:////tmp/a:b@c/study.db", "sqlite:////tmp/a:b@c/study.db"),  # no credentials in a file path
])
def test_every_url_is_shown_without_its_password(url, shown):
    assert mask_url(url) == shown
    assert mask_url(f"error: --storage '{url}' refused") == f"error: --storage '{shown}' refused"


def test_pieces_of_a_password_that_a_parser_quotes_alone_are_masked():
    url = "postgresql://litexp:Se@cret9@db/x"
    text = "failed to resolve host 'cret9@db': and Se is a word"
    assert mask_secrets(text, url) == "failed to resolve host '***@db': and Se is a word"


@pytest.mark.slow  # a sweep started against each URL (~4.5 s each)
@pytest.mark.parametrize("url", ["postgresql://litexp:s3cr@tPW9@127.0.0.1:5/x",
                                 "postgresql://litexp:s3cretPW9@127.0.0.1:notaport/x"])
def test_a_malformed_storage_url_is_one_line_without_the_password(url, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", *SIN, "--storage", url])
    out, err = capsys.readouterr()
    assert exit_info.value.code == 2
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "--storage postgresql://litexp:***@127.0.0.1" in lines[0], err[-2000:]
    assert "PW9" not in out + err and "s3c" not in out + err


class _Recorder(BaseHTTPRequestHandler):
    seen: list[tuple[str, str | None]] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.seen.append((self.path, self.headers.get("Authorization")))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def recorder():
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Recorder)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    _Recorder.seen = []
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_the_mlflow_health_check_sends_url_credentials_as_basic_auth(recorder, monkeypatch):
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    check_answers(f"http://alice:p%40ss:w@127.0.0.1:{recorder}/", "MLFLOW_TRACKING_URI")
    expected = "Basic " + base64.b64encode(b"alice:p@ss:w").decode()
    assert _Recorder.seen == [("/health", expected)]  # the host freed of the credentials, which go as a header
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "tok")
    check_answers(f"http://127.0.0.1:{recorder}", "MLFLOW_TRACKING_URI")
    assert _Recorder.seen[-1] == ("/health", "Bearer tok")


def test_an_unreachable_tracking_server_is_one_line_without_the_password(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://alice:Pa@ss9W@127.0.0.1:{free_port()}")
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "-c", str(EXPERIMENTS / "sin_mlp.yaml"), "-c", str(EXPERIMENTS / "presets" / "mlflow.yaml"),
              "--trainer.max_epochs", "1"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "no MLflow server answers" in err and "http://alice:***@127.0.0.1" in err, err[-2000:]
    assert "ss9W" not in err and "Pa@" not in err
