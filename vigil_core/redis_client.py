"""The one way Vigil opens a Redis connection, and the one conversion of Redis failures.

redis is imported when a client is made or an error converted, so importing this module costs nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from vigil_core.errors import StoreUnavailable

if TYPE_CHECKING:
    import redis

__all__ = ["connect", "store_errors", "SERVICE_TIMEOUT_S"]

# A service (scorer, evaluator, review app, incident engine) waits this long for one Redis reply before
# it treats Redis as down: long enough for a slow pipeline of a few hundred commands, short enough that a
# dead Redis turns into a retried batch (and a stale heartbeat) within seconds, not minutes.
SERVICE_TIMEOUT_S = 5.0


def connect(url: str, *, timeout_s: float = SERVICE_TIMEOUT_S, health_check_interval: int = 0) -> redis.Redis:
    """A client for `url` whose every reply and connect waits at most `timeout_s` seconds.

    Example:
        client = connect(settings.redis_url.get_secret_value())
    """
    import redis

    return redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                health_check_interval=health_check_interval)


@contextlib.contextmanager
def store_errors(what: str | None = None) -> Iterator[None]:
    """Turn any Redis failure inside the block into `StoreUnavailable` ("what: cause"), for callers to act on.

    Example:
        with store_errors("halt record not changed"):
            client.set(key, value)
    """
    import redis

    try:
        yield
    except redis.RedisError as exc:
        raise StoreUnavailable(f"{what}: {exc}" if what else str(exc)) from exc
