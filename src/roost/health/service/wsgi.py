"""The health endpoints and in-flight tracking for WSGI apps (Flask)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import orjson

from roost.health.service.core import Health

# -- WSGI -------------------------------------------------------------------------------------

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class _Counted:
    """A WSGI response body that marks the request finished when the server closes it."""

    def __init__(self, body: Iterable[bytes], health: Health) -> None:
        self._body = body
        self._health = health
        self._done = False

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            if not self._done:
                self._done = True
                self._health.request_finished()


class HealthWSGI:
    """WSGI middleware (Flask: ``app.wsgi_app = HealthWSGI(app.wsgi_app, health)``): serves the
    health endpoints and counts in-flight requests. Async dependency checks run on a private
    event loop per call; plain callables run in worker threads."""

    def __init__(self, app: WSGIApp, health: Health, *, prefix: str = "/health") -> None:
        self.app = app
        self.health = health
        self.prefix = prefix.rstrip("/")

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith(self.prefix) and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            answer = asyncio.run(self.health.endpoint(path, self.prefix))
            if answer is not None:
                status, body = answer
                payload = orjson.dumps(body)
                reason = "OK" if status == 200 else "Service Unavailable"
                start_response(
                    f"{status} {reason}",
                    [
                        ("Content-Type", "application/json"),
                        ("Content-Length", str(len(payload))),
                        ("Cache-Control", "no-store"),
                    ],
                )
                return [payload]
        self.health.request_started()
        try:
            response = self.app(environ, start_response)
        except BaseException:
            self.health.request_finished()
            raise
        return _Counted(response, self.health)
