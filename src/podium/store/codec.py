"""Encoding of step outputs for the store: JSON, zlib-compressed past a small threshold.

The first byte says which: b"j" plain JSON, b"z" zlib-compressed JSON.
"""

from __future__ import annotations

import zlib
from typing import Any

import orjson

COMPRESS_OVER_BYTES = 4096


class TooLarge(ValueError):
    def __init__(self, size_bytes: int) -> None:
        self.size_bytes = size_bytes
        super().__init__(f"{size_bytes} bytes")


def encode(value: Any, *, max_bytes: int | None = None) -> bytes:
    """The stored form; `max_bytes` bounds the JSON size before compression."""
    raw = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY)
    if max_bytes is not None and len(raw) > max_bytes:
        raise TooLarge(len(raw))
    if len(raw) > COMPRESS_OVER_BYTES:
        return b"z" + zlib.compress(raw, 3)
    return b"j" + raw


def decode(blob: bytes | None) -> Any:
    if blob is None:
        return None
    if blob[:1] == b"z":
        return orjson.loads(zlib.decompress(blob[1:]))
    return orjson.loads(blob[1:])
