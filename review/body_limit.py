"""Request bodies are bounded before they are read (issue 35: one unsigned 100 MB POST to the webhook raised the
review process to 390 MB, its Helm limit being 512 Mi).

An ASGI middleware: a request whose Content-Length is over the bound is answered 413 without reading a byte of it;
a body sent without a length (chunked) is counted as it arrives and refused with 413 at the first chunk that passes
the bound. Every route is behind it: the largest legitimate body (a label's note, a login form, a PagerDuty webhook
event) is a few kilobytes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["BodyLimit", "MAX_BODY_BYTES"]

MAX_BODY_BYTES = 256 * 1024

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class _TooLarge(Exception):
    pass


class BodyLimit:
    """Refuse request bodies over `max_bytes` with 413, before reading them."""

    def __init__(self, app: App, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _refuse(send, 400, b'{"error":"bad content-length"}')
                    return
                if declared > self.max_bytes:
                    await _refuse(send, 413, b'{"error":"request body too large"}')
                    return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except _TooLarge:
            if not started:
                await _refuse(send, 413, b'{"error":"request body too large"}')


async def _refuse(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
