"""Upstream side of the data path: instances, their keep-alive pools and the response parser.

An :class:`UpstreamConn` is an asyncio protocol with an httptools response parser. It belongs to one
exchange at a time (``self.exchange``) and hands every parser event to it; between exchanges it sits
in its instance's idle list.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import httptools

from roost.client.balance import Policy, make_policy
from roost.client.breaker import BreakerConfig, Breakers, BreakerState
from roost.client.instance import Instance
from roost.gateway.outlier import EjectionPolicy, OutlierDetector, State

MAX_IDLE_PER_INSTANCE = 256


class ResponseSink(Protocol):
    """What an upstream connection reports to the exchange it serves."""

    def response_head(
        self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]], keep_alive: bool
    ) -> None: ...
    def response_body(self, data: bytes) -> None: ...
    def response_done(self, keep_alive: bool) -> None: ...
    def response_upgraded(self, rest: bytes) -> None: ...
    def upstream_lost(self, reason: str) -> None: ...
    def upstream_paused(self, paused: bool) -> None: ...
    def flush(self) -> None: ...


class Upstream:
    """One instance of a service, with its pool of idle keep-alive connections."""

    __slots__ = ("host", "id", "idle", "inflight", "instance", "key", "port", "service", "tags")

    def __init__(self, instance: Instance) -> None:
        self.instance = instance
        self.service = instance.service
        self.id = instance.id
        self.host = instance.address
        self.port = instance.port
        self.tags = frozenset(instance.tags)
        self.key = instance.key
        self.idle: list[UpstreamConn] = []
        self.inflight = 0

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def take_idle(self) -> UpstreamConn | None:
        idle = self.idle
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        return None

    def release(self, conn: UpstreamConn) -> None:
        if conn.closed:
            return
        if len(self.idle) < MAX_IDLE_PER_INSTANCE:
            conn.exchange = None
            self.idle.append(conn)
        else:
            conn.close()

    def close_idle(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()

    async def connect(self, timeout: float) -> UpstreamConn:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            _, conn = await loop.create_connection(lambda: UpstreamConn(self), self.host, self.port)
        return conn


class UpstreamConn(asyncio.Protocol):
    """One HTTP/1.1 connection to an upstream instance."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.exchange: ResponseSink | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.reason = b""
        self.closed = False
        self.used = 0  # exchanges served, so a reset on a reused connection can be told apart
        self.got_response = False  # any response byte for the current exchange
        self.head_only = False  # the current request is HEAD: the response has no body
        self.interim = False  # the current message is a 1xx answer other than 101
        self.tunnel: asyncio.Transport | None = None  # after 101: bytes go straight to the client
        self.until_close = False  # the current response body ends when the connection does

    # The exchange calls these.
    def begin(self, exchange: ResponseSink, head_only: bool) -> None:
        self.exchange = exchange
        self.head_only = head_only
        self.until_close = False
        self.got_response = False
        self.used += 1

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def close(self) -> None:
        self.closed = True
        self.exchange = None
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closed = True
        self.exchange = None
        if self.transport is not None:
            self.transport.abort()

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.write(data)
            return
        exchange = self.exchange
        if exchange is None:  # bytes nobody asked for: the connection is not reusable
            self.close()
            return
        self.got_response = True
        try:
            self.parser.feed_data(data)
            exchange.flush()
        except httptools.HttpParserUpgrade as exc:
            rest = data[exc.args[0] :] if exc.args else b""
            if self.exchange is not None:
                self.exchange.response_upgraded(rest)
        except httptools.HttpParserError:
            exchange = self.exchange
            self.abort()
            if exchange is not None:
                exchange.upstream_lost("bad response")

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        exchange, self.exchange = self.exchange, None
        if self.tunnel is not None:
            self.tunnel.close()
            self.tunnel = None
        elif exchange is not None:
            if exc is None and self.until_close:
                exchange.response_done(False)  # the close is the end of this body
                exchange.flush()
            else:
                exchange.upstream_lost("reset" if exc is not None else "closed")

    def pause_writing(self) -> None:
        if self.tunnel is not None:
            self.tunnel.pause_reading()
        elif self.exchange is not None:
            self.exchange.upstream_paused(True)

    def resume_writing(self) -> None:
        if self.tunnel is not None:
            self.tunnel.resume_reading()
        elif self.exchange is not None:
            self.exchange.upstream_paused(False)

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.headers = []

    def on_status(self, reason: bytes) -> None:
        self.reason = reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        exchange = self.exchange
        if exchange is None:
            return
        self.interim = 100 <= status < 200 and status != 101
        # A body with neither length nor chunking runs until the upstream closes (RFC 9112 6.3).
        self.until_close = (
            status >= 200
            and status not in (204, 304)
            and not self.head_only
            and not any(n.lower() in (b"content-length", b"transfer-encoding") for n, _ in self.headers)
        )
        exchange.response_head(status, self.reason, self.headers, self.parser.should_keep_alive())
        if self.head_only and not self.interim and status != 101:
            # httptools cannot be told the request was HEAD: finish here and start a fresh parser.
            self.parser = httptools.HttpResponseParser(self)
            self.exchange = None
            exchange.response_done(True)

    def on_body(self, body: bytes) -> None:
        if self.exchange is not None:
            self.exchange.response_body(body)

    def on_message_complete(self) -> None:
        if self.parser.get_status_code() == 101:
            return  # HttpParserUpgrade follows: the exchange turns into a tunnel
        if self.interim:
            self.interim = False
            return
        exchange = self.exchange
        if exchange is not None:
            self.exchange = None
            exchange.response_done(self.parser.should_keep_alive())


class ServicePool:
    """The healthy instances of one service, and how one is chosen for a request.

    Three layers decide, per pick: outlier ejection (:mod:`roost.gateway.outlier`: consecutive
    failures, growing ejection times, a cap on the share ejected), the client library's per-instance
    circuit breakers (error rate over a sliding window, half-open probes) and the client library's
    load-balancing policy over what is left. When the breakers would leave nothing, they are ignored
    (Envoy's "panic" routing): the ejection cap still guarantees some instance gets traffic.
    """

    def __init__(self, name: str, policy: str, ejection: EjectionPolicy, breakers: BreakerConfig) -> None:
        self.name = name
        self.policy_name = policy
        self.policy = make_policy(policy)
        self.policies: dict[str, Policy] = {policy: self.policy}
        self.upstreams: list[Upstream] = []
        self.by_id: dict[str, Upstream] = {}
        self.outlier = OutlierDetector(ejection)
        self.breakers = Breakers(breakers)
        self._tagged: dict[tuple[str, ...], list[Upstream]] = {}
        self._instances: dict[tuple[str, ...], list[Instance]] = {}
        self._tripped: set[str] = set()  # instances whose breaker is not closed

    def update(self, upstreams: list[Upstream]) -> list[Upstream]:
        """Replace the instance list, keeping pools of instances that stayed; returns those removed."""
        fresh: list[Upstream] = []
        by_id: dict[str, Upstream] = {}
        for up in upstreams:
            old = self.by_id.get(up.id)
            if old is not None and old.instance == up.instance:
                up = old
            fresh.append(up)
            by_id[up.id] = up
        removed = [u for u in self.upstreams if by_id.get(u.id) is not u]
        self.upstreams = fresh
        self.by_id = by_id
        self._tagged = {}
        self._instances = {}
        self.outlier.sync(set(by_id))
        keys = {u.key for u in fresh}
        self._tripped &= keys
        self.breakers.forget(keys)
        for policy in self.policies.values():
            policy.forget(keys)
        return removed

    def candidates(self, tags: tuple[str, ...]) -> list[Upstream]:
        if not tags:
            return self.upstreams
        found = self._tagged.get(tags)
        if found is None:
            want = set(tags)
            found = self._tagged[tags] = [u for u in self.upstreams if want <= u.tags]
        return found

    def policy_for(self, name: str) -> Policy:
        if not name:
            return self.policy
        policy = self.policies.get(name)
        if policy is None:
            policy = self.policies[name] = make_policy(name)
        return policy

    def pick(
        self, now: float, tags: tuple[str, ...] = (), exclude: tuple[Upstream, ...] = (), policy: str = ""
    ) -> Upstream | None:
        """An available instance, or None. Ejected and excluded instances are skipped."""
        ups = self.candidates(tags)
        if not ups:
            return None
        if not exclude and not self.outlier.disturbed and not self._tripped:
            # Fast path: every instance is in rotation; no list to filter.
            if len(ups) == 1:
                return ups[0]
            instances = self._instances.get(tags)
            if instances is None:
                instances = self._instances[tags] = [u.instance for u in ups]
            return self.by_id[self.policy_for(policy).pick(instances, now).id]
        available = self.outlier.available
        breakers = self.breakers
        usable = [u for u in ups if u not in exclude and available(u.id, now)]
        if not usable:
            return None
        closed = [u for u in usable if (b := breakers.get(u.key)) is None or b.available(now)]
        chosen = closed or usable
        if len(chosen) == 1:
            up = chosen[0]
        else:
            inst = self.policy_for(policy).pick([u.instance for u in chosen], now)
            up = self.by_id[inst.id]
        breaker = breakers.get(up.key)
        if breaker is not None:
            breaker.allow(now)
        return up

    def started(self, up: Upstream, policy: str, now: float) -> None:
        self.policy_for(policy).on_start(up.instance, now)

    def abandoned(self, up: Upstream, policy: str, now: float, latency: float) -> None:
        """The request ended with no verdict on the instance (the client left, a stale connection)."""
        self.policy_for(policy).on_result(up.instance, now=now, latency=latency, ok=True)

    def finished(self, up: Upstream, policy: str, now: float, latency: float, ok: bool) -> None:
        """Feed one result to the policy, the breaker and the outlier detector."""
        self.policy_for(policy).on_result(up.instance, now=now, latency=latency, ok=ok)
        if ok:
            breaker = self.breakers.get(up.key)
            if breaker is not None:
                breaker.record_success(now)
                if self._tripped and breaker.state is BreakerState.CLOSED:
                    self._tripped.discard(up.key)
            self.outlier.success(up.id, now)
        else:
            breaker = self.breakers[up.key]
            breaker.record_failure(now)
            if breaker.state is not BreakerState.CLOSED:
                self._tripped.add(up.key)

    def state(self, up: Upstream, now: float) -> str:
        ejected = self.outlier.state(up.id, now)
        if ejected is not State.CLOSED:
            return f"ejected ({ejected.value})" if ejected is State.OPEN else "probation"
        breaker = self.breakers.get(up.key)
        return "healthy" if breaker is None else f"breaker {breaker.state_at(now).value}"
