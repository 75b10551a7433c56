"""A minimal request/response pair and router over raw ASGI: the agent's API is small, hot and
answered mostly from pre-encoded bytes, so it does without a web framework's per-request cost."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

import orjson

from roost.errors import TooLarge, ValidationError

JSON = b"application/json"
TEXT = b"text/plain; charset=utf-8"

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(slots=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[bytes, bytes]
    receive: Receive
    max_body: int
    params: tuple[str, ...] = ()  # percent-decoded trailing path segments

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def args(self, name: str) -> list[str]:
        return self.query.get(name, [])

    def flag(self, name: str) -> bool:
        """Consul-style boolean parameter: present, empty, 1 or true mean yes; 0 or false mean no."""
        values = self.query.get(name)
        if values is None:
            return False
        value = values[-1].lower()
        if value in ("", "1", "true", "yes"):
            return True
        if value in ("0", "false", "no"):
            return False
        raise ValidationError(
            f"query parameter {name!r} must be true or false, got {values[-1]!r}", field=name
        )

    async def body(self) -> bytes:
        length = self.headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            raise TooLarge(f"request body is larger than {self.max_body} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise TooLarge(f"request body is larger than {self.max_body} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def json(self, *, required: bool = True) -> Any:
        raw = await self.body()
        if not raw.strip():
            if required:
                raise ValidationError("request body is empty; a JSON object was expected", field="body")
            return None
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ValidationError(f"request body is not valid JSON: {exc}", field="body") from None


@dataclass(slots=True)
class Response:
    status: int = 200
    body: bytes = b""
    content_type: bytes = JSON
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


def json_response(value: Any, status: int = 200) -> Response:
    return Response(status, orjson.dumps(value))


def text_response(text: str, status: int) -> Response:
    return Response(status, text.encode() + b"\n", TEXT)


Handler = Callable[[Request], Awaitable[Response]]


class Router:
    """Exact paths, and prefixes whose remainder is one percent-decoded parameter."""

    def __init__(self) -> None:
        self.exact: dict[str, dict[str, Handler]] = {}
        self.prefixes: list[tuple[str, dict[str, Handler]]] = []

    def add(self, methods: str, path: str, handler: Handler) -> None:
        if path.endswith("/:"):
            prefix = path[:-1]
            found = [t for known, t in self.prefixes if known == prefix]
            if found:
                table = found[0]
            else:
                table = {}
                self.prefixes.append((prefix, table))
                self.prefixes.sort(key=lambda item: -len(item[0]))
        else:
            table = self.exact.setdefault(path, {})
        for method in methods.split():
            table[method] = handler

    def match(self, raw_path: str) -> tuple[dict[str, Handler] | None, tuple[str, ...]]:
        table = self.exact.get(raw_path)
        if table is not None:
            return table, ()
        for prefix, table in self.prefixes:
            if raw_path.startswith(prefix) and len(raw_path) > len(prefix):
                return table, (unquote(raw_path[len(prefix) :]),)
        return None, ()


def parse_query(raw: bytes) -> dict[str, list[str]]:
    if not raw:
        return {}
    try:
        return parse_qs(raw.decode("latin-1"), keep_blank_values=True)
    except ValueError as exc:
        raise ValidationError(f"malformed query string: {exc}", field="query") from None
