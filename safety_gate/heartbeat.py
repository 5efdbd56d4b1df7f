"""Heartbeats: a key with a TTL per component, refreshed while that component's loop is healthy.

The gate treats a missing scorer heartbeat as unsafe: monitoring that is down cannot vouch for the AI.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time

import redis

from vigil_core.redis_client import store_errors

__all__ = ["Heartbeat", "heartbeat_key"]


def heartbeat_key(prefix: str, component: str) -> str:
    """`vigil:heartbeat:scorer` for the scorer with the default prefix."""
    return f"{prefix}heartbeat:{component}"


class Heartbeat:
    """Refreshes `heartbeat:{component}` with a TTL; any live instance keeps the component alive."""

    def __init__(self, client: redis.Redis, prefix: str, component: str, ttl_s: float) -> None:
        self._r = client
        self.key = heartbeat_key(prefix, component)
        self.instance_key = f"{self.key}:{socket.gethostname()}:{os.getpid()}"
        self._ttl_ms = int(ttl_s * 1000)

    def beat(self, **status: object) -> None:
        """Mark the component alive for another TTL."""
        value = json.dumps({"at": time.time(), "instance": self.instance_key, **status}, default=str)
        with store_errors("heartbeat not written"):
            pipe = self._r.pipeline(transaction=False)
            pipe.set(self.key, value, px=self._ttl_ms)
            pipe.set(self.instance_key, value, px=self._ttl_ms)
            pipe.execute()

    def stop(self) -> None:
        """Remove this instance's key (the component key expires on its own if no one else beats)."""
        with contextlib.suppress(redis.RedisError):
            self._r.delete(self.instance_key)
