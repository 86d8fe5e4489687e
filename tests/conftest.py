"""Every test has a time limit (pytest-timeout, ``timeout`` in pyproject.toml; a slower test sets its own with
``@pytest.mark.timeout(N)``), so a hang ends the run instead of holding CI.

The thread method, because a hang can sit in native code (an OpenMP barrier in a convolution) where no
Python signal handler ever runs, and Lightning installs its own SIGTERM handler. On expiry the limit names
the test, kills the processes the test started (a CLI run, a server) so none outlives the run, then
pytest-timeout dumps every thread's stack and ends the process.
"""

from __future__ import annotations

import sys
import threading

import psutil
import pytest
import pytest_timeout


def _expire(item: pytest.Item, settings) -> None:
    sys.stderr.write(f"\nTIMEOUT: {item.nodeid} ran past its {settings.timeout:g} s limit; the run stops here\n")
    sys.stderr.flush()
    for child in psutil.Process().children(recursive=True):
        try:
            child.kill()
        except psutil.Error:
            pass
    pytest_timeout.timeout_timer(item, settings)


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_set_timer(item: pytest.Item, settings) -> bool | None:
    """pytest-timeout's thread timer, with the test named and its child processes killed first."""
    if settings.method != "thread":
        return None
    timer = threading.Timer(settings.timeout, _expire, (item, settings))
    timer.name = f"timeout {item.nodeid}"
    timer.daemon = True

    def cancel() -> None:
        timer.cancel()
        timer.join()

    item.cancel_timeout = cancel
    timer.start()
    return True
