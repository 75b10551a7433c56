"""A small pooled HTTP/1.1 client for health probes: raw asyncio protocols, httptools' parser.

Why not httpx: a probe is one GET with a short body, thousands per second against a handful of
hosts. On the agent's single core, a shared ``httpx.AsyncClient`` managed about 1,000 requests per
CPU-second (less with many concurrent requests: its pool is searched linearly), which leaves no
room for the rest of the agent. This client keeps idle keep-alive connections per (host, port,
TLS) and costs a fraction of that. It reads at most ``MAX_BODY`` bytes of a body before giving the
connection up, never follows redirects (as Consul), and speaks nothing but HTTP/1.1.

Why not aiohttp (which the etcd store uses): side by side it costs about 2x this client's CPU per
probe (`python bench/health_bench.py --clients-only`), and a probe must dial exactly the address
that `--check-allow-cidr` approved (``connect_to``) while keeping the URL's host for the Host
header and TLS, so that a name cannot resolve to an allowed address for the check and another for
the connection. aiohttp has no per-request way to say that.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools

MAX_BODY = 64 * 1024  # past this much body, close the connection instead of reading on
KEEP_BODY = 4096
MAX_IDLE_PER_HOST = 256


@dataclass(slots=True)
class HttpResult:
    status: int
    reason: str
    body: bytes = b""
    location: str = ""  # the Location header, for redirects


class HttpError(Exception):
    """The request failed before a complete response (refused, reset, timed out, bad response)."""


class _Conn(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.waiter: asyncio.Future[HttpResult] | None = None
        self.head = False
        self.keep = False
        self._reset()

    def _reset(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.result = HttpResult(0, "")
        self.seen = 0

    # httptools callbacks
    def on_status(self, status: bytes) -> None:
        self.result.reason += status.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.result.status = self.parser.get_status_code()
        if self.head:  # no body follows a HEAD response, whatever Content-Length says
            self.keep = False
            self._finish()

    def on_body(self, body: bytes) -> None:
        self.seen += len(body)
        room = KEEP_BODY - len(self.result.body)
        if room > 0:
            self.result.body += body[:room]
        if self.seen > MAX_BODY:
            self.keep = False
            self._finish()

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"location":
            self.result.location = value.decode("latin-1")

    def on_message_complete(self) -> None:
        if self.waiter is not None and not self.waiter.done():  # not given up early (HEAD, big body)
            self.keep = self.parser.should_keep_alive()
        self._finish()

    def _finish(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(self.result)

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's do not subclass it

    def data_received(self, data: bytes) -> None:
        if self.waiter is None or self.waiter.done():
            self.closed = True  # unsolicited bytes: this connection is of no further use
            if self.transport is not None:
                self.transport.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.keep = False
            if not self.waiter.done():
                self.waiter.set_exception(HttpError(f"bad HTTP response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            if self.result.status and not self.head:  # a body delimited by the end of the connection
                self.keep = False
                self.waiter.set_result(self.result)
            else:
                self.waiter.set_exception(HttpError("connection closed before a complete response"))

    def request(self, data: bytes, head: bool) -> asyncio.Future[HttpResult]:
        assert self.transport is not None
        self._reset()
        self.keep = False
        self.head = head
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self.waiter


Key = tuple[str, int, bool, bool]  # host, port, tls, verify


class HttpPool:
    """Idle keep-alive connections by (host, port, TLS, verify), shared by every HTTP check."""

    def __init__(self, user_agent: str = "roost health check") -> None:
        self._idle: dict[Key, list[_Conn]] = {}
        self._user_agent = user_agent
        self._tls: dict[bool, ssl.SSLContext] = {}

    def _context(self, verify: bool) -> ssl.SSLContext:
        ctx = self._tls.get(verify)
        if ctx is None:
            ctx = ssl.create_default_context()
            if not verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            self._tls[verify] = ctx
        return ctx

    async def request(
        self,
        url: str,
        *,
        method: str = "GET",
        headers: dict[str, list[str]] | None = None,
        body: str = "",
        verify: bool = True,
        timeout: float = 10.0,
        connect_to: str | None = None,
    ) -> HttpResult:
        """One request; raises HttpError or TimeoutError. `connect_to` overrides the address dialled
        (the resolved address a guard approved), keeping the URL's host for the Host header and TLS."""
        parts = urlsplit(url)
        tls = parts.scheme == "https"
        host = parts.hostname or ""
        port = parts.port or (443 if tls else 80)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        host_header = parts.netloc.rpartition("@")[2]
        lines = [f"{method} {target} HTTP/1.1", f"Host: {host_header}"]
        given = {k.lower() for k in (headers or {})}
        if "user-agent" not in given:
            lines.append(f"User-Agent: {self._user_agent}")
        if "accept" not in given:
            lines.append("Accept: text/plain, text/*, */*")
        for name, values in (headers or {}).items():
            lines.extend(f"{name}: {value}" for value in values)
        payload = body.encode()
        if payload or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(payload)}")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace") + payload
        key: Key = (connect_to or host, port, tls, verify)
        async with asyncio.timeout(timeout):
            for attempt in range(2):
                conn, reused = self._checkout(key), True
                if conn is None:
                    conn, reused = await self._connect(key, host if tls else None), False
                try:
                    result = await conn.request(data, method == "HEAD")
                except HttpError:
                    if reused and attempt == 0 and not conn.result.status:
                        continue  # the server closed an idle connection under us: retry once, fresh
                    raise
                except BaseException:
                    conn.closed = True
                    if conn.transport is not None:
                        conn.transport.abort()
                    raise
                self._checkin(key, conn)
                return result
        raise HttpError("unreachable")  # pragma: no cover

    def _checkout(self, key: Key) -> _Conn | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                return conn
        return None

    def _checkin(self, key: Key, conn: _Conn) -> None:
        conn.waiter = None
        if not conn.keep or conn.closed:
            conn.closed = True
            if conn.transport is not None:
                conn.transport.close()
            return
        idle = self._idle.setdefault(key, [])
        if len(idle) >= MAX_IDLE_PER_HOST:
            conn.closed = True
            if conn.transport is not None:
                conn.transport.close()
            return
        idle.append(conn)

    async def _connect(self, key: Key, server_hostname: str | None) -> _Conn:
        host, port, tls, verify = key
        loop = asyncio.get_running_loop()
        try:
            if tls:
                _, conn = await loop.create_connection(
                    _Conn, host, port, ssl=self._context(verify), server_hostname=server_hostname
                )
            else:
                _, conn = await loop.create_connection(_Conn, host, port)
        except ConnectionRefusedError:
            raise HttpError("connection refused") from None
        except ssl.SSLError as exc:
            raise HttpError(f"TLS handshake failed: {exc.reason or exc}") from None
        except OSError as exc:
            raise HttpError(exc.strerror or str(exc) or type(exc).__name__) from None
        return conn

    def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                if conn.transport is not None:
                    conn.transport.close()
        self._idle.clear()
