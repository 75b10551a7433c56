"""The asyncio shell of the DNS interface: UDP and TCP sockets around `Responder`.

Everything protocol-related is in cache.py and answer.py; this module only moves bytes, frames
TCP messages (RFC 1035 4.2.2 length prefix, pipelining allowed), forwards to a recursor when one
is configured, and guards against clients that never finish or never read.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import time
from collections.abc import Callable
from typing import cast

import dns.asyncquery
import dns.flags
import dns.message

from roost.catalog.state import CatalogState
from roost.config import AgentConfig, split_host_port
from roost.dns.answer import Settings
from roost.dns.cache import Forward, Responder, servfail

log = logging.getLogger("roost.dns")

_Send = Callable[[bytes], None]  # where a forwarded answer goes: a UDP peer or a TCP connection

DEFAULT_PORT = 8600
TCP_IDLE_TIMEOUT = 10.0  # seconds a TCP connection may sit without a complete query (RFC 7766)
MAX_TCP_CONNECTIONS = 1024
MAX_FORWARDS = 256  # recursor queries in flight; beyond this new ones get SERVFAIL
FORWARD_TIMEOUT = 2.0
SOCKET_BUFFER = 4 * 1024 * 1024  # absorbs bursts while the loop is busy (capped by the kernel)


class DnsServer:
    """The agent's DNS server on one address, UDP and TCP on the same port."""

    def __init__(self, state: CatalogState, config: AgentConfig) -> None:
        self.config = config
        self.responder = Responder(state, Settings.from_config(config, serial=int(time.time())))
        self.recursors = [split_host_port(r, 53) for r in config.dns_recursors]
        self.address = ""
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._connections: set[_TcpProtocol] = set()
        self._forwards: set[asyncio.Task[None]] = set()

    async def start(self) -> str:
        """Bind and serve; returns "host:port" as bound (the port is picked by the OS for port 0)."""
        loop = asyncio.get_running_loop()
        udp_sock, tcp_sock = _bind_pair(self.config.dns_addr)
        transport, _ = await loop.create_datagram_endpoint(lambda: _UdpProtocol(self), sock=udp_sock)
        self._udp = transport
        self._tcp = await loop.create_server(lambda: _TcpProtocol(self), sock=tcp_sock)
        host, port = udp_sock.getsockname()[:2]
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return self.address

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            for conn in list(self._connections):
                conn.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._tcp.wait_closed(), 2)
            self._tcp = None
        for task in list(self._forwards):
            task.cancel()

    def answer(self, data: bytes, *, tcp: bool) -> bytes | Forward | None:
        try:
            return self.responder.respond(data, tcp=tcp)
        except Exception:  # a bug must cost one query, never the server
            log.exception("DNS query failed")
            return servfail(data)

    def forward(self, query: dns.message.Message, data: bytes, send: _Send, *, tcp: bool) -> None:
        if len(self._forwards) >= MAX_FORWARDS:
            reply = servfail(data)
            if reply is not None:
                send(reply)
            return
        task = asyncio.get_running_loop().create_task(self._forward(query, data, send, tcp))
        self._forwards.add(task)
        task.add_done_callback(self._forwards.discard)

    async def _forward(self, query: dns.message.Message, data: bytes, send: _Send, tcp: bool) -> None:
        for host, port in self.recursors:
            try:
                if tcp:
                    response = await dns.asyncquery.tcp(query, host, timeout=FORWARD_TIMEOUT, port=port)
                else:
                    response = await dns.asyncquery.udp(
                        query, host, timeout=FORWARD_TIMEOUT, port=port, ignore_unexpected=True
                    )
            except Exception as exc:
                log.debug("recursor %s:%s failed: %s", host, port, exc)
                continue
            response.flags |= dns.flags.RA  # we recursed on the client's behalf
            send(response.to_wire(max_size=0 if tcp else max(512, query.payload), prefer_truncation=True))
            return
        reply = servfail(data)
        if reply is not None:
            send(reply)


class _UdpSend:
    __slots__ = ("addr", "transport")

    def __init__(self, transport: asyncio.DatagramTransport, addr: tuple[str | int, ...]) -> None:
        self.transport, self.addr = transport, addr

    def __call__(self, reply: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.sendto(reply, self.addr)


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # uvloop's is not a subclass

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        reply = self.server.answer(data, tcp=False)
        if reply is None or self.transport is None:
            return
        if type(reply) is bytes:
            self.transport.sendto(reply, addr)
        elif isinstance(reply, Forward):
            self.server.forward(reply.query, data, _UdpSend(self.transport, addr), tcp=False)

    def error_received(self, exc: Exception) -> None:
        log.debug("DNS UDP error: %s", exc)  # e.g. ICMP port unreachable from a gone client


class _TcpProtocol(asyncio.Protocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.last_activity = 0.0
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        if len(self.server._connections) >= MAX_TCP_CONNECTIONS:
            self.transport.abort()
            return
        self.server._connections.add(self)
        loop = asyncio.get_running_loop()
        self.last_activity = loop.time()
        self.timer = loop.call_later(TCP_IDLE_TIMEOUT, self._check_idle)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._connections.discard(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.transport = None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _check_idle(self) -> None:
        if self.transport is None:
            return
        loop = asyncio.get_running_loop()
        idle = loop.time() - self.last_activity
        if idle >= TCP_IDLE_TIMEOUT:
            self.transport.abort()
            return
        self.timer = loop.call_later(TCP_IDLE_TIMEOUT - idle, self._check_idle)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        while len(buffer) >= 2 and self.transport is not None:
            size = int.from_bytes(buffer[:2], "big")
            if len(buffer) < 2 + size:
                break
            packet = bytes(buffer[2 : 2 + size])
            del buffer[: 2 + size]
            self.last_activity = asyncio.get_running_loop().time()
            reply = self.server.answer(packet, tcp=True)
            if reply is None:
                continue
            if type(reply) is bytes:
                self(reply)
            elif isinstance(reply, Forward):
                self.server.forward(reply.query, packet, self, tcp=True)

    def __call__(self, reply: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(len(reply).to_bytes(2, "big") + reply)

    # A client that sends queries but never reads its answers stops being read from.
    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()


def _bind_pair(addr: str) -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket on the same port. Port 0: the OS picks it for UDP, then TCP takes
    the same number, retried a few times in case another process holds it for TCP."""
    host, port = split_host_port(addr, DEFAULT_PORT)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    last: OSError | None = None
    for _ in range(1 if port else 20):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        try:
            udp.bind((host, port))
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                with contextlib.suppress(OSError):
                    udp.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
            bound = udp.getsockname()[1]
            tcp = socket.socket(family, socket.SOCK_STREAM)
            try:
                tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                tcp.bind((host, bound))
                tcp.listen(1024)
            except OSError:
                tcp.close()
                raise
        except OSError as exc:
            udp.close()
            last = exc
            if exc.errno != errno.EADDRINUSE:
                raise
            continue
        udp.setblocking(False)
        tcp.setblocking(False)
        return udp, tcp
    assert last is not None
    raise last
