"""Files written whole or not at all: summaries, prediction tables, checkpoints, best configs.

A reader (``runs``, a resumed run, a person) must never find a half-written file, whatever
kills the writer. The content goes to a temporary file next to the target (same file system, so
the final move is a rename, not a copy), is flushed to disk, and ``os.replace`` swaps it in,
which is atomic on POSIX and Windows.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomically(path: str | os.PathLike, content: bytes | memoryview | str | Callable[[BinaryIO], None],
                     fsync: bool = False) -> Path:
    """Write ``content`` (bytes, text, or a function that writes into a binary file) to ``path``.

    ``fsync`` also forces the bytes to the disk before the rename (checkpoints: survive a power
    cut); without it the rename still guarantees a reader sees the old file or the new one.
    """
    target = Path(path)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as f:
            if callable(content):
                content(f)
            else:
                f.write(content.encode() if isinstance(content, str) else content)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(temporary, target)
    except OSError as err:
        temporary.unlink(missing_ok=True)
        raise OSError(err.errno, f"could not write {target} ({err.strerror or err}); free some space or set "
                      "--trainer.default_root_dir elsewhere; the earlier file is intact") from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return target
