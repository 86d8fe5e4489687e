"""Whether the process that wrote a record (a run's summary, a sweep trial) is still alive."""

from __future__ import annotations

import os
import socket


def process_gone(host: object, pid: object) -> bool:
    """Whether the process ``pid`` recorded on ``host`` is known to have ended: only a process of this
    host can be checked; one of another host, or an unreadable record, counts as not gone.
    """
    if host != socket.gethostname() or not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)  # signal 0: an existence check, nothing is sent
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, under another user
        return False
    return False
