"""The Optuna storage a study lives in, shared by ``sweep`` and ``cv``: opened with one-line errors, and its trials
whose process died recovered.
"""

from __future__ import annotations

import importlib.util
import random
import time
from pathlib import Path
from typing import Any

from experiments.redact import mask_secrets, mask_url
from experiments.runs.processes import process_gone
from experiments.terminal import condense_error

#: the Python driver SQLAlchemy loads for a storage URL's dialect (``dialect+driver://``), and its package;
#: plain ``postgresql://`` means psycopg 3 from SQLAlchemy 2.1 on (psycopg2 before)
DRIVERS = {
    "postgresql": ("psycopg", "psycopg[binary]"), "postgresql+psycopg": ("psycopg", "psycopg[binary]"),
    "postgresql+psycopg2": ("psycopg2", "psycopg2-binary"), "postgresql+pg8000": ("pg8000", "pg8000"),
    "mysql": ("MySQLdb", "mysqlclient"), "mysql+mysqldb": ("MySQLdb", "mysqlclient"),
    "mysql+pymysql": ("pymysql", "pymysql"),
}


def _default_postgres_driver() -> tuple[str, str]:
    import sqlalchemy

    major, minor = (int(part) for part in sqlalchemy.__version__.split(".")[:2])
    return ("psycopg", "psycopg[binary]") if (major, minor) >= (2, 1) else ("psycopg2", "psycopg2-binary")


def driver_hint(url: str, err: BaseException) -> str:
    """``; pip install X`` when the URL's database driver is not installed (SQLAlchemy says only "install
    appropriate one").
    """
    scheme = url.split("://", 1)[0].lower()
    module, package = _default_postgres_driver() if scheme == "postgresql" else DRIVERS.get(scheme, (None, None))
    if module is None or importlib.util.find_spec(module) is not None:
        return ""
    return f"; {scheme}:// needs the {module} driver: pip install {package!r}"


def open_storage(url: str | None, default_db: Path, heartbeat_interval: int, grace_period: int) -> tuple[Any, str, Any]:
    """An Optuna ``RDBStorage`` at ``url`` (None: SQLite at ``default_db``), with a heartbeat so that a trial of a
    machine that died is failed after ``grace_period`` seconds and queued again once.

    Returns:
        ``(storage, url as printed (no password), the retry callback)``.

    Raises:
        ValueError: the storage cannot be opened (bad URL, missing driver, refused login, unreachable server).
    """
    if url is None:
        default_db.parent.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{default_db.resolve()}"
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    retry = RetryHeartbeatStaleTrialCallback(max_retry=1)
    kwargs = {"engine_kwargs": {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None,
              "heartbeat_interval": heartbeat_interval, "grace_period": grace_period,
              "heartbeat_stale_trial_callback": retry}
    shown = mask_url(url)
    for attempt in range(5):  # workers started together race to create the tables of a new database
        try:
            storage = RDBStorage(url, **kwargs)
            if url.startswith("sqlite"):
                serialize_sqlite_transactions(storage.engine)
            return storage, shown, retry
        except Exception as err:  # a bad URL, no driver, an unreachable server, a refused login, or that race
            if attempt == 4 or isinstance(err, ImportError) or "authentication failed" in str(err):
                reason = condense_error(mask_secrets(str(err), url))
                raise ValueError(f"--storage {shown}: cannot open ({reason}){driver_hint(url, err)}") from None
            time.sleep(0.5 + random.random())
    raise AssertionError("unreachable")


def serialize_sqlite_transactions(engine: Any) -> None:
    """Begin every transaction on this SQLite engine with ``BEGIN IMMEDIATE`` (SQLAlchemy's pysqlite recipe).

    Why: Optuna hands a queued trial to one worker by reading it as WAITING and writing RUNNING in one transaction,
    guarded by ``SELECT ... FOR UPDATE``, which SQLite ignores; with pysqlite's deferred ``BEGIN`` two processes
    both read WAITING and both run the trial (optuna#4621), and the second to finish fails with "Cannot tell a
    COMPLETE trial". ``BEGIN IMMEDIATE`` takes the database's write lock before the read, so one worker at a time
    reads and claims; the others wait (up to the connection's 60 s timeout). PostgreSQL and MySQL honour
    ``FOR UPDATE`` and are left as they are.
    """
    from sqlalchemy import event

    engine.dispose()  # connections opened while the tables were made would keep pysqlite's own BEGIN

    @event.listens_for(engine, "connect")
    def _no_pysqlite_begin(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" below emits the BEGIN instead

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def recover_dead_trials(study: Any, retry: Any) -> None:
    """Mark failed (and queue again, once, through ``retry``) the running trials whose process on this host is gone."""
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = trial.user_attrs.get("pid")
        if not process_gone(trial.user_attrs.get("host"), pid):
            continue
        study.tell(trial.number, state=TrialState.FAIL)
        failed = next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)
        retry(study, failed)
        print(f"trial {trial.number}: interrupted (process {pid} is gone); marked failed and queued again", flush=True)
