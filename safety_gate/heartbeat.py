"""Heartbeats: a key with a TTL per component and per instance, refreshed while that instance's loop is
healthy, and for the scorer one entry per partition of `conversation.events` it owns.

The gate treats a missing scorer heartbeat as unsafe: monitoring that is down cannot vouch for the AI. One
healthy replica refreshing the component key would hide a wedged one, so the gate also checks that every
partition has an owner whose loop is alive and not too far behind (`partitions_problem`).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time

import redis

from vigil_core import keys
from vigil_core.redis_client import store_errors

__all__ = ["Heartbeat", "heartbeat_key", "owners_key", "partitions_problem", "COUNT_FIELD"]

# The owners hash's field holding how many partitions the topic has (the others are partition numbers).
COUNT_FIELD = "_count"


def heartbeat_key(prefix: str, component: str) -> str:
    """`vigil:heartbeat:scorer` for the scorer with the default prefix."""
    return f"{prefix}{keys.HEARTBEAT}{component}"


def owners_key(prefix: str, component: str = "scorer") -> str:
    """The hash of partition owners: field = partition, value = {instance, until, lag}; `_count` = partitions."""
    return f"{heartbeat_key(prefix, component)}:owners"


def partitions_problem(raw: dict[bytes, bytes] | dict[str, str], now: float, max_lag: int | None) -> str | None:
    """Why the partitions are not all watched (None: every one has a live owner within `max_lag`)."""
    d = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
         for k, v in raw.items()}
    if COUNT_FIELD not in d:
        return "no scorer has reported the partitions it owns"
    try:
        count = int(d[COUNT_FIELD])
        for p in range(count):
            if str(p) not in d:
                return f"partition {p} has no scorer"
            entry = json.loads(d[str(p)])
            if float(entry["until"]) < now:
                return f"partition {p}: its scorer stopped reporting"
            if max_lag is not None and int(entry.get("lag", 0)) > max_lag:
                return f"partition {p} is {int(entry['lag'])} events behind (limit {max_lag})"
    except (ValueError, TypeError, KeyError, AttributeError):
        return "the partition owners record is unreadable"
    return None if count > 0 else "the topic has no partitions"


class Heartbeat:
    """Refreshes `heartbeat:{component}` with a TTL; any live instance keeps the component alive."""

    def __init__(self, client: redis.Redis, prefix: str, component: str, ttl_s: float) -> None:
        self._r = client
        self.key = heartbeat_key(prefix, component)
        self.instance_key = f"{self.key}:{socket.gethostname()}:{os.getpid()}"
        self.owners_key = f"{self.key}:owners"
        self._ttl_ms = int(ttl_s * 1000)

    def beat(self, partitions: dict[int, int] | None = None, partition_count: int | None = None,
             **status: object) -> None:
        """Mark the component and this instance alive for another TTL; with `partitions` ({partition: lag}),
        also mark this instance the live owner of each (and record how many partitions the topic has)."""
        now = time.time()
        value = json.dumps({"at": now, "instance": self.instance_key, **status}, default=str)
        with store_errors("heartbeat not written"):
            pipe = self._r.pipeline(transaction=False)
            pipe.set(self.key, value, px=self._ttl_ms)
            pipe.set(self.instance_key, value, px=self._ttl_ms)
            if partitions is not None:
                until = now + self._ttl_ms / 1000
                owned: dict[str, str] = {
                    str(p): json.dumps({"instance": self.instance_key, "until": until, "lag": int(lag)})
                    for p, lag in partitions.items()
                }
                if partition_count is not None:
                    owned[COUNT_FIELD] = str(partition_count)
                if owned:
                    pipe.hset(self.owners_key, mapping=owned)
                pipe.pexpire(self.owners_key, self._ttl_ms)
            pipe.execute()

    def stop(self) -> None:
        """Remove this instance's key (the component key expires on its own if no one else beats)."""
        with contextlib.suppress(redis.RedisError):
            self._r.delete(self.instance_key)
