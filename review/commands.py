"""Handlers of `vigil review serve` and `vigil users ...`."""

from __future__ import annotations

import argparse
import json
import sys

from review.users import UserStore
from vigil_core.redis_client import connect
from vigil_core.settings import Settings

__all__ = ["serve_command", "users_command", "server_options"]


def serve_command(args: argparse.Namespace, settings: Settings) -> int:
    """Serve the review app with uvicorn until SIGTERM."""
    import uvicorn
    from prometheus_client import start_http_server

    from review.app import create_app
    from review.outcomes import QueueCollector, ReviewMetrics
    from review.queue import ReviewQueue

    metrics = ReviewMetrics()
    metrics.registry.register(QueueCollector(ReviewQueue(connect(settings.redis_url.get_secret_value()),
                                                         settings.redis_prefix)))
    if args.metrics_port:
        start_http_server(args.metrics_port, registry=metrics.registry)
    app = create_app(settings, metrics=metrics)
    proxy_headers, forwarded_allow_ips = server_options(settings)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False,
                proxy_headers=proxy_headers, forwarded_allow_ips=forwarded_allow_ips)
    return 0


def server_options(settings: Settings) -> tuple[bool, str]:
    """uvicorn's (proxy_headers, forwarded_allow_ips): X-Forwarded-For believed from the configured proxies only
    (none by default)."""
    proxies = settings.review_trusted_proxies.strip()
    return bool(proxies), proxies


def users_command(args: argparse.Namespace, settings: Settings) -> int:
    """add NAME --role ROLE --password-stdin | disable NAME."""
    store = UserStore(connect(settings.redis_url.get_secret_value()), settings.redis_prefix)
    if args.users_command == "add":
        if not args.password_stdin:
            print("vigil: pass the password on standard input with --password-stdin", file=sys.stderr)
            return 2
        password = sys.stdin.readline().rstrip("\n")
        user = store.add(args.name, args.role, password, replace=args.replace)
        print(json.dumps({"name": user.name, "role": user.role, "saved": True}) if args.json
              else f"user {user.name} ({user.role}) saved")
    else:
        store.disable(args.name)
        print(json.dumps({"name": args.name, "disabled": True}) if args.json else f"user {args.name} disabled")
    return 0
