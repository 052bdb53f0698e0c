"""ASGI middleware that caps request bodies: 413 before the upload is spooled anywhere.

A ``Content-Length`` over the limit is refused at once; a body without one (chunked) is counted as it
streams, and the request is answered 413 as soon as it passes the limit.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["BodySizeLimitMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _TooLargeError(Exception):
    pass


class BodySizeLimitMiddleware:
    """Answer 413 to any request whose body passes ``max_bytes`` (plus a little for multipart framing)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, slack: int = 64 * 1024) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.limit = max_bytes + slack

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    if int(value) > self.limit:
                        await self._reject(send)
                        return
                except ValueError:
                    pass
        received = 0
        started = False
        rejected = False

        async def counting_receive() -> Message:
            nonlocal received, rejected
            if rejected:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # Answer now, before the app reads another byte. The app's body parser turns the error
                    # raised below into its own answer (FastAPI: 400), which guarded_send drops.
                    rejected = True
                    if not started:
                        await self._reject(send)
                    raise _TooLargeError
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if rejected:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _TooLargeError:
            pass
        except Exception:
            if not rejected:
                raise

    async def _reject(self, send: Send) -> None:
        body = json.dumps(
            {
                "detail": {
                    "field": "body",
                    "message": f"The request is larger than the upload limit of {self.max_bytes} bytes "
                    "(AMULET_MAX_UPLOAD_BYTES). Upload a smaller file or ask the operator to raise the limit.",
                }
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
