"""Tables go into BENCHMARKS.md between markers, so each suite rewrites its own block and no other."""

from __future__ import annotations

import re
from pathlib import Path


def write_section(path: Path, key: str, text: str) -> None:
    """Replace (or append) the block between ``<!-- bench:key -->`` markers, keeping the rest."""
    start, end = f"<!-- bench:{key} -->", f"<!-- /bench:{key} -->"
    block = f"{start}\n{text}\n{end}"
    current = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    path.write_text(pattern.sub(lambda _: block, current) if pattern.search(current) else current + "\n" + block + "\n")
