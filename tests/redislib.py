"""The test Redis at 127.0.0.1:6379 for tests outside tests/bus: a fresh key prefix per test.

Under CI=true an unreachable Redis fails the test; elsewhere it skips.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379


def redis_url(prefix: str) -> str:
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/0?prefix={prefix}"


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of this test's own, its keys deleted afterwards."""
    try:
        with redis.Redis(REDIS_HOST, REDIS_PORT, socket_connect_timeout=3) as client:
            client.ping()
    except redis.RedisError as exc:
        message = f"Redis not reachable at {REDIS_HOST}:{REDIS_PORT}: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    name = f"t-{uuid.uuid4().hex}"
    yield name
    with redis.Redis(REDIS_HOST, REDIS_PORT) as client:
        keys = list(client.scan_iter(match=f"{name}:*"))
        if keys:
            client.delete(*keys)


def subscribers(channel: str) -> int:
    """How many connections are subscribed to a pub/sub channel (PUBSUB NUMSUB)."""
    with redis.Redis(REDIS_HOST, REDIS_PORT) as client:
        return int(dict(client.pubsub_numsub(channel)).get(channel.encode(), 0))
