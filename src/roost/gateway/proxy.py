"""Client side of the data path: the request parser, the limits, pipelining, the WebSocket tunnel.

Everything on the hot path runs in protocol callbacks: with a pooled upstream connection a request
is parsed, routed, rewritten and written upstream without a task, a future or an await. Only opening
a new upstream connection runs as a task.

Flow control both ways: a full upstream write buffer pauses reading from the client, a full client
write buffer pauses reading from the upstream, so bodies of any size pass with bounded memory.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING

import httptools

from roost.gateway.exchange import PAUSE_QUEUE, Exchange, error_response
from roost.gateway.upstream import UpstreamConn

if TYPE_CHECKING:
    from roost.gateway.state import GatewayState

LINGER = 1.0  # seconds a rejected connection is drained before it is closed


class Reject(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ClientConn(asyncio.Protocol):
    """One downstream connection: parses requests and runs their exchanges one after another."""

    def __init__(self, state: GatewayState) -> None:
        self.state = state
        self.cfg = state.config
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.peer = b""
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.header_bytes = 0
        self.head_bytes = 0
        self.head_since = 0.0  # when the current request head began arriving; 0: not in a head
        self.last_active = state.now
        self.parsing: Exchange | None = None  # the exchange whose request the parser is reading
        self.current: Exchange | None = None  # the exchange being served
        self.queue: deque[Exchange] = deque()  # pipelined requests waiting their turn
        self.paused = 0
        self.write_paused = False
        self.closing = False
        self.tunnel: UpstreamConn | None = None  # after a WebSocket upgrade
        self.wbuf: list[bytes] = []  # response bytes not yet handed to the transport
        self.wsize = 0

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]).encode() if peer else b""
        state = self.state
        if len(state.conns) >= self.cfg.max_connections:
            self.linger(error_response(503, {"error": "too many connections"}, close=True))
            return
        state.conns.add(self)

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.write(data)
            return
        if self.closing:
            return
        if not self.head_since and self.parsing is None:  # between requests: a new head begins
            self.head_since = self.state.now or 1.0
            self.head_bytes = 0
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            ex = self.parsing or (self.queue[-1] if self.queue else self.current)
            rest = data[exc.args[0] :] if exc.args else b""
            if ex is not None and rest:
                ex.request_body(rest, raw=True)
            self.parser = httptools.HttpRequestParser(self)  # no further HTTP on this connection
            self.head_since = 0.0
            self.closing = True  # until the upgrade answer decides
            return
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__ or exc.__cause__
            if isinstance(cause, Reject):
                self.reject(cause.status, cause.message)
            else:
                self.reject(500, "internal error")
            return
        except httptools.HttpParserError:
            self.reject(400, "malformed request")
            return
        except Reject as exc:
            self.reject(exc.status, exc.message)
            return
        if self.head_since:
            self.head_bytes += len(data)
            if self.head_bytes > self.cfg.max_request_line + self.cfg.max_header_bytes:
                self.reject(431, "request head too large")
        else:
            self.last_active = self.state.now

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.state.conns.discard(self)
        if self.tunnel is not None:
            self.tunnel.close()
            self.tunnel = None
        current, self.current = self.current, None
        if current is not None:
            current.client_gone()
        self.queue.clear()

    def pause_writing(self) -> None:
        self.write_paused = True
        ex = self.current
        if ex is not None and ex.conn is not None and ex.conn.transport is not None:
            ex.conn.transport.pause_reading()
        if self.tunnel is not None and self.tunnel.transport is not None:
            self.tunnel.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        ex = self.current
        if ex is not None and ex.conn is not None and ex.conn.transport is not None:
            ex.conn.transport.resume_reading()
        if self.tunnel is not None and self.tunnel.transport is not None:
            self.tunnel.transport.resume_reading()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.header_bytes = 0
        if not self.head_since:
            self.head_since = self.state.now or 1.0

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.cfg.max_request_line:
            raise Reject(414, "request line too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        self.header_bytes += len(name) + len(value) + 4
        if len(self.headers) > self.cfg.max_headers:
            raise Reject(431, "too many header fields")
        if self.header_bytes > self.cfg.max_header_bytes:
            raise Reject(431, "request header fields too large")

    def on_headers_complete(self) -> None:
        self.head_since = 0.0
        self.last_active = self.state.now
        parser = self.parser
        ex = Exchange(
            self,
            parser.get_method(),
            self.url,
            self.headers,
            parser.should_keep_alive(),
            parser.get_http_version() == "1.1",
            parser.should_upgrade(),
        )
        self.parsing = ex
        if self.current is None:
            self.current = ex
            ex.start()
        else:
            self.queue.append(ex)
            self.pause(PAUSE_QUEUE)

    def on_body(self, body: bytes) -> None:
        ex = self.parsing
        if ex is not None:
            ex.request_body(body)

    def on_message_complete(self) -> None:
        ex, self.parsing = self.parsing, None
        if ex is not None:
            ex.request_done()

    # used by exchanges
    def pause(self, reason: int) -> None:
        if not self.paused and self.transport is not None:
            self.transport.pause_reading()
        self.paused |= reason

    def resume(self, reason: int) -> None:
        if not self.paused & reason:
            return
        self.paused &= ~reason
        if not self.paused and self.transport is not None and not self.closing:
            self.transport.resume_reading()

    def write(self, data: bytes) -> None:
        """Queue bytes for the client; :meth:`flush` sends them in one system call."""
        self.wbuf.append(data)
        self.wsize += len(data)

    def flush(self) -> None:
        wbuf = self.wbuf
        if not wbuf:
            return
        data = wbuf[0] if len(wbuf) == 1 else b"".join(wbuf)
        wbuf.clear()
        self.wsize = 0
        if self.transport is not None:
            self.transport.write(data)

    def unwrite(self) -> None:
        """Forget queued bytes (an answer that will be replaced by a retry's)."""
        self.wbuf.clear()
        self.wsize = 0

    def reject(self, status: int, message: str) -> None:
        """Answer a bad request and close; an exchange in flight is abandoned."""
        self.closing = True
        self.state.rejected(status, message, self.peer)
        if self.current is not None and self.current.response_started:
            self.abort()
            return
        current, self.current = self.current, None
        if current is not None:
            current.client_gone()
        self.linger(error_response(status, {"error": message}, close=True))

    def linger(self, answer: bytes) -> None:
        """Send a last answer and close gently: what the client still sends is read and dropped for a
        moment, so the kernel does not reset the connection before the client has read the answer."""
        self.closing = True
        transport = self.transport
        if transport is None:
            return
        transport.write(answer)
        try:
            transport.write_eof()
        except (OSError, NotImplementedError, RuntimeError):
            transport.close()
            return
        transport.resume_reading()
        asyncio.get_running_loop().call_later(LINGER, transport.close)

    def abort(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.abort()

    def exchange_done(self, ex: Exchange, close: bool) -> None:
        self.flush()
        if self.current is not ex:
            return
        self.current = None
        self.last_active = self.state.now
        if close or self.closing:
            self.closing = True
            if self.transport is not None:
                self.transport.close()
            return
        if self.queue:
            nxt = self.current = self.queue.popleft()
            if not self.queue:
                self.resume(PAUSE_QUEUE)
            nxt.start()

    def start_tunnel(self, conn: UpstreamConn) -> None:
        self.tunnel = conn
        self.current = None
        self.queue.clear()
        self.paused = 0
        if self.transport is not None:
            self.transport.resume_reading()

    def sweep(self, now: float) -> None:
        """Called a few times a second: enforce the slow-client, idle and upstream timeouts."""
        cfg = self.cfg
        if self.closing or self.tunnel is not None:
            return
        if self.head_since and now - self.head_since > cfg.header_timeout:
            self.reject(408, "request head not received in time")
            return
        ex = self.current
        if ex is None:
            if not self.head_since and now - self.last_active > cfg.idle_timeout and self.transport:
                self.closing = True
                self.transport.close()
            return
        ex.sweep(now)
