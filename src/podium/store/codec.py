"""Encoding of step outputs for the store: JSON, zlib-compressed past a small threshold.

The first byte says which: b"j" plain JSON, b"z" zlib-compressed JSON.
"""

from __future__ import annotations

import zlib
from typing import Any

import orjson

COMPRESS_OVER_BYTES = 4096


def encode(value: Any) -> bytes:
    raw = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY)
    if len(raw) > COMPRESS_OVER_BYTES:
        return b"z" + zlib.compress(raw, 3)
    return b"j" + raw


def decode(blob: bytes | None) -> Any:
    if blob is None:
        return None
    if blob[:1] == b"z":
        return orjson.loads(zlib.decompress(blob[1:]))
    return orjson.loads(blob[1:])
