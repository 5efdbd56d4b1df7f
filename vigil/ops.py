"""The small handlers of `vigil config`, `vigil health`, `vigil topics create`, and which `vigil train` runs."""

from __future__ import annotations

import argparse
import json
import sys

from vigil.parser import _lazy
from vigil_core import keys
from vigil_core.settings import Settings

__all__ = ["config_show", "health", "topics_create", "train"]


def config_show(args: argparse.Namespace, settings: Settings) -> int:
    print(json.dumps(settings.redacted(), indent=2, sort_keys=True))
    return 0


def health(args: argparse.Namespace, settings: Settings) -> int:
    """Exit 0 when a process of COMPONENT on this host beat within its TTL (a container's healthcheck: the process
    does its work, not only serves /metrics), else 1."""
    import socket

    from vigil_core.redis_client import connect

    client = connect(settings.redis_url.get_secret_value())
    pattern = f"{settings.redis_prefix}{keys.HEARTBEAT}{args.component}:{socket.gethostname()}:*"
    try:
        alive = next(client.scan_iter(match=pattern, count=1000), None) is not None
    except Exception as exc:  # noqa: BLE001 - Redis unreachable: not healthy, say why
        print(f"vigil: health: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"component": args.component, "host": socket.gethostname(), "healthy": alive}))
    elif not alive:
        print(f"vigil: no {args.component} heartbeat from this host", file=sys.stderr)
    return 0 if alive else 1


def topics_create(args: argparse.Namespace, settings: Settings) -> int:
    from kafka_io import all_topics, ensure_topics

    ensure_topics(settings, partitions=args.partitions)
    topics = all_topics(settings)
    print(json.dumps({"topics": topics}) if args.json else "topics ready: " + ", ".join(topics))
    return 0


def train(args: argparse.Namespace, settings: Settings) -> int:
    if args.from_labels and args.replies:
        return _lazy("vigil.train_replies:replies_command")(args, settings)
    if args.from_labels:
        return _lazy("vigil.train_from_labels:from_labels_command")(args, settings)
    return _lazy("models.training.commands:train_command")(args, settings)
