"""One request and its answer: routing, the choice of instance, retries, streaming and accounting.

An :class:`Exchange` is created by the client connection (:mod:`roost.gateway.proxy`) when a request
head is complete, and is fed by both sides: request body pieces from the client's parser, response
events from the :class:`~roost.gateway.upstream.UpstreamConn` it is attached to. All of it runs in
protocol callbacks; only opening a new upstream connection is a task.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

import orjson

from roost.gateway.upstream import ServicePool, Upstream, UpstreamConn

if TYPE_CHECKING:
    from roost.gateway.proxy import ClientConn

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
    }
)
# Headers the gateway sets itself; a client's values are dropped (X-Forwarded-For is extended instead).
OWN_HEADERS = frozenset({b"x-forwarded-proto", b"x-forwarded-host", b"x-request-id"})
# Request headers the single pass in Exchange.start() looks at; all others are copied upstream as is.
SPECIAL_REQUEST = HOP_BY_HOP | OWN_HEADERS | {b"host", b"content-length", b"x-forwarded-for"}
CONNECTION_KEYWORDS = frozenset({b"close", b"keep-alive", b"upgrade"})
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
REPLAY_MAX = 64 * 1024  # request bytes kept so an idempotent request can be sent again after a reset
RESPONSE_HOLD = 64 * 1024  # answer bytes held back while an idempotent request can still be retried
MAX_STALE_RETRIES = 2  # free retries after a pooled connection turned out to be closed
PENDING_MAX = 256 * 1024  # body bytes buffered while the upstream connection opens
REASONS = {
    400: b"Bad Request",
    404: b"Not Found",
    408: b"Request Timeout",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
}

# Why reading from the client is paused (a bit each; reading resumes when none is left).
PAUSE_UPSTREAM = 1
PAUSE_PENDING = 2
PAUSE_QUEUE = 4


def error_response(status: int, body: Mapping[str, object], *, close: bool, request_id: bytes = b"") -> bytes:
    payload = orjson.dumps(body)
    head = [
        b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, b"Error")),
        b"content-type: application/json\r\ncontent-length: %d\r\n" % len(payload),
    ]
    if request_id:
        head.append(b"x-request-id: " + request_id + b"\r\n")
    if close:
        head.append(b"connection: close\r\n")
    head.append(b"\r\n")
    return b"".join(head) + payload


class Exchange:
    """One request and its response: routing, instance choice, retries, streaming and accounting."""

    __slots__ = (
        "attempt_started",
        "attempts",
        "body_done",
        "bytes_out",
        "chunked",
        "client",
        "close_before",
        "close_client",
        "committed",
        "conn",
        "connect_timeout",
        "done",
        "error",
        "has_body",
        "head",
        "headers",
        "host",
        "http11",
        "keep_alive",
        "last_client",
        "last_upstream",
        "method",
        "method_b",
        "pending",
        "pending_size",
        "policy",
        "pool",
        "queued",
        "read_timeout",
        "request_id",
        "resp_chunked",
        "response_started",
        "retries",
        "route_name",
        "sent",
        "sent_size",
        "service",
        "since",
        "stale_retries",
        "started",
        "state",
        "status",
        "tags",
        "total_timeout",
        "tried",
        "upgrade",
        "upstream",
        "upstream_key",
        "url",
    )

    def __init__(
        self,
        client: ClientConn,
        method: bytes,
        url: bytes,
        headers: list[tuple[bytes, bytes]],
        keep_alive: bool,
        http11: bool,
        upgrade: bool,
    ) -> None:
        self.client = client
        self.state = client.state
        self.method_b = method
        self.method = method.decode("ascii", "replace")
        self.url = url
        self.headers = headers
        self.keep_alive = keep_alive
        self.http11 = http11
        self.upgrade = upgrade
        self.started = time.perf_counter()
        self.since = self.state.now
        self.host = b""
        self.request_id = b""
        self.chunked = False
        self.has_body = False
        self.body_done = False
        self.pending: list[bytes] = []
        self.pending_size = 0
        self.sent: list[bytes] | None = None
        self.sent_size = 0
        self.head = b""
        self.route_name = ""
        self.service = ""
        self.pool: ServicePool | None = None
        self.tags: tuple[str, ...] = ()
        self.policy = ""
        self.upstream: Upstream | None = None
        self.upstream_key = ""
        self.attempt_started = 0.0
        self.conn: UpstreamConn | None = None
        self.tried: tuple[Upstream, ...] = ()
        self.attempts = 0
        self.stale_retries = 0
        self.retries = 0
        self.connect_timeout = 0.0
        self.read_timeout = 0.0
        self.total_timeout = 0.0
        self.last_upstream = 0.0
        self.last_client = self.state.now
        self.status = 0
        self.response_started = False
        self.resp_chunked = False
        self.close_client = not keep_alive
        self.close_before = self.close_client
        self.committed = False
        self.bytes_out = 0
        self.done = False
        self.error = ""
        self.queued = True

    # -- request side -------------------------------------------------------------------------
    def start(self) -> None:
        """Route the request and send it upstream (called when it is this connection's turn)."""
        self.queued = False
        state = self.state
        cfg = state.config
        host = b""
        length = False
        request_id = b""
        xff = b""
        upgrade = b""
        extra_hop: set[bytes] | None = None
        # One pass over the request headers: note what routing needs and copy the end-to-end ones.
        lines: list[bytes] = []
        for name, value in self.headers:
            n = name.lower()
            if n not in SPECIAL_REQUEST:
                lines += (name, b": ", value, b"\r\n")
            elif n == b"host":
                host = value
                lines += (name, b": ", value, b"\r\n")
            elif n == b"content-length":
                length = value.strip() not in (b"", b"0")
                lines += (name, b": ", value, b"\r\n")
            elif n == b"transfer-encoding":
                self.chunked = b"chunked" in value.lower()
            elif n == b"x-request-id":
                request_id = value
            elif n == b"x-forwarded-for":
                xff = value + b", "
            elif n == b"upgrade":
                upgrade = value
            elif n == b"connection":
                tokens = {t.strip().lower() for t in value.split(b",")} - CONNECTION_KEYWORDS
                if tokens:  # rare: the client names more hop-by-hop headers
                    extra_hop = (extra_hop or set()) | tokens
        if extra_hop:
            lines = [
                b"".join((name, b": ", value, b"\r\n"))
                for name, value in self.headers
                if ((n := name.lower()) not in extra_hop and n not in SPECIAL_REQUEST)
                or n in (b"host", b"content-length")
            ]
        self.host = host
        self.has_body = self.chunked or length
        self.request_id = request_id or state.next_request_id()
        url = self.url
        qpos = url.find(b"?")
        path = (url if qpos < 0 else url[:qpos]).decode("latin-1")
        if path.startswith("/_roost/"):
            self.local(path, url[qpos + 1 :] if qpos >= 0 else b"")
            return
        hostname = host.decode("latin-1").lower()
        if hostname.startswith("["):
            hostname = hostname[: hostname.find("]") + 1]
        elif ":" in hostname:
            hostname = hostname.rsplit(":", 1)[0]
        headers = (
            {n.decode("latin-1").lower(): v.decode("latin-1") for n, v in self.headers}
            if state.match_headers
            else {}
        )
        route = state.table.match(self.method, hostname, path, headers)
        if route is None:
            self.fail(404, "no route", {"error": "no route for this request", "path": path})
            return
        self.route_name = route.name
        self.service = route.service
        self.tags = route.tags
        self.policy = route.policy or ""
        self.retries = cfg.retries if route.retries is None else route.retries
        self.connect_timeout = route.connect_timeout or cfg.connect_timeout
        self.read_timeout = route.read_timeout or cfg.read_timeout
        self.total_timeout = route.total_timeout or cfg.total_timeout
        target = (
            route.rewrite(path).encode("latin-1") if route.strip_prefix else url[:qpos] if qpos >= 0 else url
        )
        if qpos >= 0:
            target += url[qpos:]
        lines += (b"x-forwarded-for: ", xff, self.client.peer, b"\r\nx-forwarded-proto: http\r\n")
        if host:
            lines += (b"x-forwarded-host: ", host, b"\r\n")
        lines += (b"x-request-id: ", self.request_id, b"\r\n")
        if self.chunked:
            lines.append(b"transfer-encoding: chunked\r\n")
        if self.upgrade and upgrade:
            lines += (b"connection: upgrade\r\nupgrade: ", upgrade, b"\r\n")
        self.head = b"".join((self.method_b, b" ", target, b" HTTP/1.1\r\n", *lines, b"\r\n"))
        self.pool = state.pools.get(route.service)
        if self.method in IDEMPOTENT:
            self.sent = []
        self.dispatch()

    def dispatch(self) -> None:
        """Pick an instance and send the request on a pooled or a new connection."""
        pool = self.pool
        up = pool.pick(self.state.now, self.tags, self.tried, self.policy) if pool is not None else None
        if up is None:
            if self.tried:
                status = 504 if self.error.endswith("timeout") else 502
                self.fail(status, self.error, {"error": self.error, "service": self.service})
            else:
                self.fail(
                    503, "no healthy instance", {"error": "no healthy instance", "service": self.service}
                )
            return
        self.upstream = up
        self.upstream_key = up.key
        self.attempts += 1
        self.attempt_started = time.perf_counter()
        up.inflight += 1
        pool.started(up, self.policy, self.state.now)  # type: ignore[union-attr]
        conn = up.take_idle()
        if conn is not None:
            self.attach(conn)
        else:
            task = asyncio.get_running_loop().create_task(self.connect(up))
            self.state.tasks.add(task)
            task.add_done_callback(self.state.tasks.discard)

    async def connect(self, up: Upstream) -> None:
        try:
            conn = await up.connect(self.connect_timeout)
        except TimeoutError:
            self.upstream_failed("connect timeout", count=True)
            return
        except OSError as exc:
            self.upstream_failed(f"connect failed: {exc.strerror or exc}", count=True)
            return
        if self.done or self.upstream is not up:
            up.release(conn)
            return
        self.attach(conn)

    def attach(self, conn: UpstreamConn) -> None:
        self.conn = conn
        conn.begin(self, self.method == "HEAD")
        self.last_upstream = self.state.now
        data = [self.head, *self.pending] if self.pending else [self.head]
        self.pending = []
        self.pending_size = 0
        self.client.resume(PAUSE_PENDING)
        if self.sent is not None:
            self.sent = data
            self.sent_size = sum(map(len, data))
            if self.sent_size > REPLAY_MAX:
                self.sent = None
        if len(data) == 1:
            conn.write(data[0])
        else:
            conn.write(b"".join(data))
        if self.client.write_paused and conn.transport is not None:
            conn.transport.pause_reading()

    def request_body(self, data: bytes, raw: bool = False) -> None:
        self.last_client = self.state.now
        if self.chunked and not raw:
            data = b"%x\r\n%b\r\n" % (len(data), data)
        self.send(data)

    def request_done(self) -> None:
        self.body_done = True
        if self.chunked:
            self.send(b"0\r\n\r\n")

    def send(self, data: bytes) -> None:
        conn = self.conn
        if conn is None or self.queued:
            if self.done:
                return
            self.pending.append(data)
            self.pending_size += len(data)
            if self.pending_size > PENDING_MAX:
                self.client.pause(PAUSE_PENDING)
            return
        if self.sent is not None:
            self.sent_size += len(data)
            if self.sent_size > REPLAY_MAX:
                self.sent = None
            else:
                self.sent.append(data)
        conn.write(data)

    # -- response side (called by UpstreamConn) ------------------------------------------------
    def flush(self) -> None:
        """End of one read from the upstream: send what it produced for the client at once.

        A replayable request's answer is held back until it is complete or RESPONSE_HOLD bytes
        long: if the instance dies before that, nothing has reached the client and the request is
        retried on another instance (the answer in progress is dropped).
        """
        if not self.committed:
            if self.sent is not None and not self.done and self.client.wsize < RESPONSE_HOLD:
                return
            self.committed = True
        self.client.flush()

    def response_head(
        self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]], keep_alive: bool
    ) -> None:
        if self.done:
            return
        self.last_upstream = self.state.now
        if 100 <= status < 200 and status != 101:
            self.client.write(b"HTTP/1.1 %d %s\r\n\r\n" % (status, reason))
            self.client.flush()  # the client may be waiting for this 100 Continue to send its body
            return
        self.status = status
        self.response_started = True
        self.close_before = self.close_client
        parts = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
        drop = HOP_BY_HOP
        for name, value in headers:
            if len(name) == 10 and name.lower() == b"connection":
                tokens = {t.strip().lower() for t in value.split(b",")} - CONNECTION_KEYWORDS
                if tokens:
                    drop = drop | tokens
        has_length = False
        upgrade = b""
        for name, value in headers:
            n = name.lower()
            if n in drop:
                if n == b"upgrade":
                    upgrade = value
                continue
            if n == b"content-length":
                has_length = True
            parts += (name, b": ", value, b"\r\n")
        if status == 101:
            if upgrade:
                parts += (b"connection: upgrade\r\nupgrade: ", upgrade, b"\r\n")
        elif not (self.method == "HEAD" or status in (204, 304) or has_length):
            if self.http11:
                self.resp_chunked = True
                parts.append(b"transfer-encoding: chunked\r\n")
            else:
                self.close_client = True
        if self.upgrade and status != 101:
            self.close_client = True  # the parser has moved past HTTP on this connection
        if not self.body_done and self.has_body:
            self.close_client = True  # answered before the upload ended: the rest is not read
        parts += (b"x-request-id: ", self.request_id, b"\r\n")
        if self.close_client:
            parts.append(b"connection: close\r\n")
        parts.append(b"\r\n")
        self.client.write(b"".join(parts))

    def response_body(self, data: bytes) -> None:
        if self.done:
            return
        self.last_upstream = self.state.now
        self.bytes_out += len(data)
        if self.resp_chunked:
            self.client.write(b"%x\r\n%b\r\n" % (len(data), data))
        else:
            self.client.write(data)

    def response_done(self, keep_alive: bool) -> None:
        if self.done:
            return
        if self.resp_chunked:
            self.client.write(b"0\r\n\r\n")
        conn, self.conn = self.conn, None
        up = self.upstream
        if conn is not None and up is not None:
            if keep_alive and self.body_done:
                up.release(conn)
            else:
                conn.close()
        self.settle("fail" if self.status >= 500 else "ok")
        self.finish(self.close_client)

    def response_upgraded(self, rest: bytes) -> None:
        conn = self.conn
        if conn is None or self.done or self.status != 101:
            if conn is not None:
                conn.abort()
            self.client.abort()
            return
        self.conn = None
        client = self.client
        conn.exchange = None
        conn.tunnel = client.transport
        if rest:
            client.write(rest)
        client.flush()
        self.settle("ok")
        self.finish(False, tunnel=True)
        client.start_tunnel(conn)

    def upstream_paused(self, paused: bool) -> None:
        if paused:
            self.client.pause(PAUSE_UPSTREAM)
        else:
            self.client.resume(PAUSE_UPSTREAM)

    def upstream_lost(self, reason: str) -> None:
        conn = self.conn
        stale = conn is not None and conn.used > 1 and not conn.got_response
        self.upstream_failed(f"upstream {reason}", count=not stale, stale=stale)

    # -- failures, timeouts, completion --------------------------------------------------------
    def settle(self, outcome: str) -> Upstream | None:
        """Let go of the current instance, reporting ``ok``, ``fail`` or ``none`` (no verdict) on it."""
        up, self.upstream = self.upstream, None
        pool = self.pool
        if up is None or pool is None:
            return up
        up.inflight -= 1
        now = self.state.now
        latency = time.perf_counter() - self.attempt_started
        if outcome == "none":
            pool.abandoned(up, self.policy, now, latency)
            return up
        pool.finished(up, self.policy, now, latency, outcome == "ok")
        if outcome == "fail":
            stats = self.state.metrics.upstream(up.key)
            if not self.response_started:
                stats.failures += 1
            ejected = pool.outlier.failure(up.id, now)
            if ejected is not None:
                stats.ejections += 1
                self.state.ejected(up, ejected.until - now, ejected.times)
        return up

    def upstream_failed(self, reason: str, *, count: bool, stale: bool = False) -> None:
        if self.done:
            return
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.abort()
        up = self.settle("fail" if count else "none")
        self.error = reason
        client = self.client
        client.resume(PAUSE_UPSTREAM)
        if self.response_started and not self.committed and self.sent is not None:
            client.unwrite()  # nothing of this answer left the gateway: start over elsewhere
            self.response_started = False
            self.status = 0
            self.resp_chunked = False
            self.bytes_out = 0
            self.close_client = self.close_before
        if self.response_started:
            self.finish(True)
            client.abort()
            return
        if stale and up is not None:
            # A pooled connection died before answering: its idle siblings are as old; drop them so
            # the next try opens a fresh connection, and do not charge this try to the retry budget.
            up.close_idle()
            if self.stale_retries < MAX_STALE_RETRIES:
                self.stale_retries += 1
                self.attempts -= 1
        nothing_sent = reason.startswith("connect") or (stale and self.sent is not None)
        replayable = self.sent is not None and self.method in IDEMPOTENT
        if self.attempts <= self.retries and (nothing_sent or replayable):
            if self.sent is not None and self.sent:
                self.pending = self.sent[1:] + self.pending
                self.sent = []
            if up is not None and not stale:
                self.tried = (*self.tried, up)
            self.dispatch()
            return
        if up is not None:
            self.tried = (*self.tried, up)
        status = 504 if reason.endswith("timeout") else 502
        self.fail(status, reason, {"error": reason, "service": self.service})

    def sweep(self, now: float) -> None:
        if self.done:
            return
        if self.client.write_paused:
            self.last_upstream = now  # the client reads slowly: the upstream is not to blame
        if self.total_timeout and now - self.since > self.total_timeout:
            self.timeout("total timeout")
        elif self.conn is not None and self.body_done and now - self.last_upstream > self.read_timeout:
            self.timeout("read timeout")
        elif not self.body_done and self.has_body and now - self.last_client > self.state.config.body_timeout:
            self.client.reject(408, "request body not received in time")

    def timeout(self, reason: str) -> None:
        self.error = reason
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.abort()
        self.settle("fail")
        if self.response_started and not self.committed:
            self.client.unwrite()  # the partial answer never left: a clean 504 instead
            self.response_started = False
            self.close_client = True
        if self.response_started:
            self.finish(True)
            self.client.abort()
        else:
            self.fail(504, reason, {"error": reason, "service": self.service})

    def fail(self, status: int, reason: str, body: dict[str, object]) -> None:
        """Answer with an error of the gateway's own (no upstream response was forwarded)."""
        if self.done:
            return
        self.status = status
        self.error = reason
        if self.has_body and not self.body_done:
            self.close_client = True
        self.client.write(error_response(status, body, close=self.close_client, request_id=self.request_id))
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.abort()
        self.settle("none")
        self.finish(self.close_client)

    def client_gone(self) -> None:
        if self.done:
            return
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.abort()
        self.settle("none")
        self.error = self.error or "client closed the connection"
        if not self.status:
            self.status = 499
        self.finish(True)

    def local(self, path: str, query: bytes) -> None:
        status, ctype, body = self.state.local(path, query)
        head = b"HTTP/1.1 %d %s\r\ncontent-type: %b\r\ncontent-length: %d\r\n" % (
            status,
            b"OK" if status == 200 else REASONS.get(status, b"Error"),
            ctype,
            len(body),
        )
        if self.close_client:
            head += b"connection: close\r\n"
        self.status = status
        self.client.write(head + b"\r\n" + body)
        self.route_name = "_roost"
        self.finish(self.close_client, account=False)

    def finish(self, close: bool, *, tunnel: bool = False, account: bool = True) -> None:
        if self.done:
            return
        self.done = True
        self.settle("none")
        if account:
            self.state.account(self, time.perf_counter() - self.started)
        if not tunnel:
            self.client.exchange_done(self, close)
