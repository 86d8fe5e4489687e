"""Run folders: ``<root>/lightning_logs/<experiment>/version_N/`` and the checkpoints inside.

Lightning resolves ``ckpt_path="best"|"last"`` only within the current process's run. An
experiment framework is used across processes (train today, test tomorrow), so ``best``/``last``
here mean: the newest run of the same experiment that holds such a checkpoint.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

BEST_PREFIX = "best-"
LAST_NAME = "last.ckpt"
_VERSION = re.compile(r"^version_(\d+)$")


def experiment_dir(root: str | os.PathLike, experiment: str) -> Path:
    return Path(root) / "lightning_logs" / experiment


def versions(exp_dir: Path) -> list[int]:
    """Version numbers present under ``exp_dir``, ascending."""
    if not exp_dir.is_dir():
        return []
    found = (_VERSION.match(p.name) for p in exp_dir.iterdir() if p.is_dir())
    return sorted(int(m.group(1)) for m in found if m)


def checkpoint_in(run_dir: Path, which: str) -> Path | None:
    """``last.ckpt`` or the best checkpoint (newest ``best-*.ckpt``) of one run, if present."""
    ckpt_dir = run_dir / "checkpoints"
    if which == "last":
        path = ckpt_dir / LAST_NAME
        return path if path.is_file() else None
    candidates = sorted(ckpt_dir.glob(f"{BEST_PREFIX}*.ckpt"), key=lambda p: p.stat().st_mtime)
    return candidates[-1] if candidates else None


def resolve_checkpoint(exp_dir: Path, which: str) -> tuple[int, Path]:
    """(version, path) of the newest run holding a ``which`` checkpoint; ValueError if none."""
    for version in reversed(versions(exp_dir)):
        path = checkpoint_in(exp_dir / f"version_{version}", which)
        if path is not None:
            return version, path
    raise ValueError(
        f"--ckpt_path {which}: no earlier run with a {which} checkpoint under {exp_dir}; "
        "run `fit` first, or pass --ckpt_path PATH to a .ckpt file"
    )


def claim_next_version(exp_dir: Path) -> int:
    """Create ``version_N`` with the next free N and return N.

    ``mkdir`` either creates the folder or fails, atomically, so two runs started at the same
    moment never share a version (TensorBoardLogger alone picks "max + 1" without claiming it).
    """
    exp_dir.mkdir(parents=True, exist_ok=True)
    existing = versions(exp_dir)
    version = existing[-1] + 1 if existing else 0
    while True:
        try:
            (exp_dir / f"version_{version}").mkdir()
            return version
        except FileExistsError:
            version += 1
