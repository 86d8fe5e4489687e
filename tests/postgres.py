"""A real PostgreSQL server for tests: Debian's ``postgresql`` package, its own data folder, a free port on
127.0.0.1, started with ``initdb`` + ``pg_ctl`` and stopped at the end.

PostgreSQL refuses to run as root, and test machines often run tests as root: then the server runs as the
``postgres`` user the package creates (``runuser``), in a folder outside pytest's temporary tree (which only
root may enter). Without PostgreSQL installed the tests that need it are skipped, unless
``LITEXP_REQUIRE_POSTGRES=1`` (set by ``.ci/run``, which installs it) makes that a failure.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.servers import free_port

USER = "litexp"


def binaries() -> Path | None:
    """The newest installed server's bin folder (Debian keeps them per version, off PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[4]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path and shutil.which("initdb") else None


def unavailable(reason: str) -> None:
    if os.environ.get("LITEXP_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"PostgreSQL is required here (LITEXP_REQUIRE_POSTGRES=1): {reason}")
    pytest.skip(f"PostgreSQL is not available: {reason}")


@contextmanager
def postgres_server() -> Iterator[tuple[str, int, str]]:
    """(host, port, password) of a fresh server whose superuser is ``litexp``; database ``postgres`` exists."""
    bin_dir = binaries()
    if bin_dir is None:
        unavailable("no initdb/pg_ctl (apt-get install postgresql)")
    as_user: list[str] = []
    owner = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            unavailable("running as root and there is no postgres user to run the server as")
        as_user = ["runuser", "-u", "postgres", "--"]
    folder = Path(tempfile.mkdtemp(prefix="litexp-postgres-"))
    password = secrets.token_hex(8)
    (folder / "password").write_text(password + "\n")
    if owner is not None:
        for path in (folder, folder / "password"):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    port = free_port()
    data, log = folder / "data", folder / "server.log"

    def run(*args: str) -> None:
        done = subprocess.run([*as_user, *args], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise AssertionError(f"{' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}\n{tail}")

    try:
        run(str(bin_dir / "initdb"), "-D", str(data), "-U", USER, "--pwfile", str(folder / "password"),
            "--auth-local", "trust", "--auth-host", "scram-sha-256", "-E", "UTF8", "--no-sync")
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "-t", "60", "start")
        try:
            yield "127.0.0.1", port, password
        finally:
            subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "-t", "30",
                            "stop"], capture_output=True, timeout=60)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def create_database(host: str, port: int, password: str, name: str) -> str:
    """A new empty database; its SQLAlchemy URL."""
    import psycopg

    with psycopg.connect(host=host, port=port, user=USER, password=password, dbname="postgres", connect_timeout=10,
                         autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql://{USER}:{password}@{host}:{port}/{name}"
