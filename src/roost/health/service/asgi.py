"""The health endpoints and in-flight tracking for ASGI apps (Starlette, FastAPI)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from roost.health.service.core import Health
from roost.health.service.lifecycle import Lifecycle

# -- ASGI -------------------------------------------------------------------------------------

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def _send_json(send: Send, status: int, body: dict[str, object]) -> None:
    payload = orjson.dumps(body)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    headers.append((b"cache-control", b"no-store"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class HealthMiddleware:
    """ASGI middleware: serves the health endpoints, counts in-flight requests, asks clients to
    close keep-alive connections while draining, and (with a `lifecycle`) registers in the
    lifespan startup, drains on SIGTERM and deregisters at shutdown.

    Works with ``app.add_middleware(HealthMiddleware, health=..., lifecycle=...)`` in Starlette
    and FastAPI, or wrapping any ASGI app.
    """

    def __init__(
        self,
        app: ASGIApp,
        health: Health,
        lifecycle: Lifecycle | None = None,
        *,
        prefix: str = "/health",
        handle_sigterm: bool = True,
    ) -> None:
        self.app = app
        self.health = health
        self.lifecycle = lifecycle
        self.prefix = prefix.rstrip("/")
        self.handle_sigterm = handle_sigterm

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if path.startswith(self.prefix) and scope.get("method") in ("GET", "HEAD"):
            answer = await self.health.endpoint(path, self.prefix)
            if answer is not None:
                await _send_json(send, *answer)
                return
        health = self.health

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start" and health.draining:
                message = {**message, "headers": [*message.get("headers", ()), (b"connection", b"close")]}
            await send(message)

        health.request_started()
        try:
            await self.app(scope, receive, send_closing)
        finally:
            health.request_finished()

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        lifecycle = self.lifecycle
        inner_started = False

        async def receive_wrapped() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown" and lifecycle is not None:
                await lifecycle.stop()
            return message

        async def send_wrapped(message: Message) -> None:
            nonlocal inner_started
            if message["type"] == "lifespan.startup.complete":
                inner_started = True
                if lifecycle is not None:
                    await lifecycle.start(handle_sigterm=self.handle_sigterm)
            await send(message)

        try:
            await self.app(scope, receive_wrapped, send_wrapped)
        except Exception:
            if inner_started:
                raise
            # The app has no lifespan support: run ours alone.
            message = await receive()
            if lifecycle is not None:
                await lifecycle.start(handle_sigterm=self.handle_sigterm)
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
            if message["type"] == "lifespan.shutdown" and lifecycle is not None:
                await lifecycle.stop()
            await send({"type": "lifespan.shutdown.complete"})
