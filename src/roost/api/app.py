"""The agent's ASGI application: routing, Consul's response headers, and the error mapping."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from roost.api.endpoints import Endpoints
from roost.api.errors import MethodNotAllowed, status_for
from roost.api.filtering import filter_arg
from roost.api.http import Receive, Request, Response, Router, Scope, Send, parse_query, text_response
from roost.errors import RoostError

if TYPE_CHECKING:
    from roost.catalog.catalog import Catalog
    from roost.config import AgentConfig
    from roost.health.runner import HealthRunner

log = logging.getLogger("roost.api")


class AgentApp:
    """ASGI callable serving /v1 (and whatever else is mounted on the router)."""

    def __init__(self, catalog: Catalog, runner: HealthRunner, config: AgentConfig) -> None:
        self.catalog = catalog
        self.config = config
        self.router = Router()
        self.endpoints = Endpoints(catalog, runner, config)
        self.endpoints.routes(self.router)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                message = await receive()
                while message["type"] != "lifespan.shutdown":
                    await send({"type": message["type"] + ".complete"})
                    message = await receive()
                await send({"type": "lifespan.shutdown.complete"})
            return
        response = await self.handle(scope, receive)
        await self.send(send, response)

    async def handle(self, scope: Scope, receive: Receive) -> Response:
        raw_path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        method = scope["method"]
        try:
            table, params = self.router.match(raw_path)
            if table is None:
                return text_response(f"no such endpoint: {scope['path']}", 404)
            handler = table.get(method)
            if handler is None:
                allowed = " ".join(sorted(table))
                raise MethodNotAllowed(f"method {method} not allowed (use {allowed})")
            request = Request(
                method,
                scope["path"],
                parse_query(scope.get("query_string", b"")),
                dict(scope["headers"]),
                receive,
                self.config.max_body,
                params,
            )
            # A bad ?filter= is refused before a blocking query starts waiting, not after.
            filter_arg(request.arg("filter"))
            return await handler(request)
        except RoostError as exc:
            return text_response(str(exc), status_for(exc))
        except Exception:
            log.exception("unexpected error serving %s %s", method, scope["path"])
            return text_response("internal error; see the agent's log", 500)

    async def send(self, send: Send, response: Response) -> None:
        ok, last_contact = self.catalog.store.connected()
        headers = [
            (b"content-type", response.content_type),
            (b"content-length", str(len(response.body)).encode()),
            (b"x-consul-knownleader", b"true" if ok else b"false"),
            (b"x-consul-lastcontact", str(int(last_contact * 1000)).encode()),
            *response.headers,
        ]
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})
