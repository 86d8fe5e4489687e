"""Image files that claim to be enormous: a valid PNG header of any size over a few bytes of pixel data
(what a decompression bomb looks like before it is decoded).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def huge_png(width: int, height: int) -> bytes:
    """A grey PNG of ``width x height`` whose IDAT holds only its first rows (a few hundred bytes)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey, no interlace
    rows = zlib.compress(b"\x00" * (width + 1) * 4, 9)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", rows) + _chunk(b"IEND", b"")


def write_huge_png(path: Path, width: int, height: int) -> Path:
    path.write_bytes(huge_png(width, height))
    return path
