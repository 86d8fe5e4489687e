"""Servers the tests start (serve, TensorBoard): a free port on 127.0.0.1, bounded waits and requests, a stop
that takes the whole process group with it.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 2.0, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def http_post(url: str, body: bytes, content_type: str, timeout: float = 10.0,
              headers: dict[str, str] | None = None) -> tuple[int, dict]:
    """POST and read the answer, also one the server sends before reading the whole body (a 413 for an
    upload over its limit, after which it closes: the rest of the body then meets a broken pipe).
    """
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.putrequest("POST", parts.path or "/")
        for name, value in {"Content-Type": content_type, "Content-Length": str(len(body)), **(headers or {})}.items():
            connection.putheader(name, value)
        connection.endheaders()
        try:
            for at in range(0, len(body), 65536):
                connection.send(body[at:at + 65536])
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered early: the answer is waiting to be read
        response = connection.getresponse()
        data = response.read()
        return response.status, json.loads(data or b"{}")
    finally:
        connection.close()


def multipart(name: str, filename: str, data: bytes) -> tuple[bytes, str]:
    boundary = "litexpboundary7f3a"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def stop(process: subprocess.Popen) -> None:
    """Stop a server started in its own session, with its workers: SIGTERM, then SIGKILL after 20 s."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    except ProcessLookupError:  # it had already exited
        process.wait(timeout=10)
    try:  # whatever of its group outlived it
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def wait_healthy(url: str, process: subprocess.Popen, limit: float = 90.0,
                 headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the server exited with {process.returncode}"
        try:
            if http_get(url, timeout=1.0, headers=headers)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"no answer from {url} within {limit} s")


def live_processes_in_group(pgid: int) -> list[int]:
    """Process ids of the group that are still running (zombies waiting for their reaper do not count)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            after_name = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # it ended while we looked
            continue
        if int(after_name[2]) == pgid and after_name[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def wait_group_gone(pgid: int, limit: float) -> list[int]:
    """Wait, at most ``limit`` seconds, until no process of the group runs; the ones still running then."""
    deadline = time.monotonic() + limit
    while (alive := live_processes_in_group(pgid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return alive


def port_is_free(port: int) -> bool:
    """Whether a new server could listen on the port now (as servers do, with SO_REUSEADDR: connections of
    the old one left in TIME_WAIT do not count, a socket still listening does).
    """
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
        except OSError:
            return False
    return True
