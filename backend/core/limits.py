"""ASGI middleware that caps request bodies: 413 before the upload is spooled anywhere.

A ``Content-Length`` over the limit is refused at once; a body without one (chunked) is counted as it
streams, and the request is answered 413 as soon as it passes the limit. Files come as multipart uploads,
capped by the upload limit; any other body (a JSON request) has a much smaller cap,
:data:`MAX_JSON_BODY_BYTES`: parsed JSON takes many times its size in memory (``[{}, {}, ...]`` about 20 times),
so a request the size of an upload would take gigabytes to parse before any check could refuse it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["MAX_JSON_BODY_BYTES", "BodySizeLimitMiddleware"]

#: The largest body of a request that is not a multipart upload (a submitted spec is a few kilobytes; its
#: text fields are capped far below this by the AMULET_MAX_*_LENGTH settings).
MAX_JSON_BODY_BYTES = 1024 * 1024

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _TooLargeError(Exception):
    pass


class BodySizeLimitMiddleware:
    """Answer 413 to any request whose body passes ``max_bytes`` (plus a little for multipart framing)."""

    def __init__(
        self, app: ASGIApp, *, max_bytes: int, slack: int = 64 * 1024, max_json_bytes: int = MAX_JSON_BODY_BYTES
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.limit = max_bytes + slack
        self.max_json_bytes = min(max_json_bytes, max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        multipart = headers.get(b"content-type", b"").lower().startswith(b"multipart/")
        limit = self.limit if multipart else self.max_json_bytes

        async def reject() -> None:
            await (self._reject(send) if multipart else self._reject_json(send))

        try:
            if int(headers.get(b"content-length", b"0")) > limit:
                await reject()
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
                if received > limit:
                    # Answer now, before the app reads another byte. The app's body parser turns the error
                    # raised below into its own answer (FastAPI: 400), which guarded_send drops.
                    rejected = True
                    if not started:
                        await reject()
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
        await self._answer_413(
            send,
            f"The request is larger than the upload limit of {self.max_bytes} bytes "
            "(AMULET_MAX_UPLOAD_BYTES). Upload a smaller file or ask the operator to raise the limit.",
        )

    async def _reject_json(self, send: Send) -> None:
        await self._answer_413(
            send,
            f"The request body is larger than {self.max_json_bytes:,} bytes, the most a request that is not a "
            "multipart file upload may send (an assessment spec is a few kilobytes). Send files as "
            "multipart/form-data uploads (POST /datasets, POST /models) and refer to them by id.",
        )

    async def _answer_413(self, send: Send, message: str) -> None:
        body = json.dumps({"detail": {"field": "body", "message": message}}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
