"""Workers that end when the serving process dies, however it dies.

LitServe stops its workers when the serving process stops cleanly (Ctrl-C, SIGTERM); after a SIGKILL (the OOM
killer, ``kill -9``, a crashed supervisor) they would go on listening and answering with nobody to stop them.
Linux's ``PR_SET_PDEATHSIG`` has the kernel send each worker SIGKILL when its parent dies (a ctypes call to
prctl(2): no library on the index keeps this one call better). It is set in every process forked from the serving
process (the HTTP workers, ``os.register_at_fork``) and by the inference worker itself as it starts (a spawned
process, which runs no fork hook); each then checks that its parent had not already died. Elsewhere than Linux
it does nothing.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_installed_for: set[int] = set()


def die_with_parent(parent_pid: int) -> bool:
    """Ask the kernel to SIGKILL this process when its parent dies; exit now when ``parent_pid`` is gone already.

    Returns:
        Whether the request took effect (False off Linux or when prctl refuses).
    """
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return False
    if os.getppid() != parent_pid:  # the parent died before the request was made: nobody would send it
        os._exit(1)
    return True


def forks_die_with(parent_pid: int) -> None:
    """Every process forked from now on by ``parent_pid`` (this process) dies with it."""
    if parent_pid in _installed_for:
        return
    _installed_for.add(parent_pid)

    def child() -> None:
        if os.getppid() == parent_pid:  # a direct child of the serving process
            die_with_parent(parent_pid)

    os.register_at_fork(after_in_child=child)
