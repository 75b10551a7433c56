"""The asyncio shell: sockets, worker processes, signals. Everything else is in the modules it wires.

With ``workers > 1`` the parent binds the listening socket (``SO_REUSEPORT``), forks the workers and
waits; worker 0 accepts on the parent's socket and the others on their own sockets bound to the same
port, so the kernel spreads connections across processes. Each worker follows the catalog itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Sequence

from roost.config import GatewayConfig, split_host_port
from roost.gateway.discovery import CatalogFollower
from roost.gateway.proxy import ClientConn
from roost.gateway.routing import Route
from roost.gateway.state import GatewayState

READY_WAIT = 5.0  # seconds to wait for the first catalog answer before accepting anyway


def bind(listen: str, *, reuse_port: bool) -> socket.socket:
    host, port = split_host_port(listen, 8080)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port and hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(4096)
    sock.setblocking(False)
    return sock


def display(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def run_worker(
    config: GatewayConfig,
    routes: Sequence[Route],
    sock: socket.socket,
    *,
    worker: int,
    share_dir: str,
    announce: bool,
) -> None:
    loop = asyncio.get_running_loop()
    state = GatewayState(config, routes, worker=worker, share_dir=share_dir)
    state.start_sweeper(loop)
    follower = CatalogFollower(state, config.agent_addr)
    follow = loop.create_task(follower.run())
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(READY_WAIT):
            await follower.ready.wait()
    server = await loop.create_server(lambda: ClientConn(state), sock=sock, backlog=4096)
    if announce:
        print(
            f"roost gateway: listening on http://{display(sock)} (agent {follower.base}, "
            f"{config.workers} worker{'s' if config.workers > 1 else ''})",
            flush=True,
        )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        server.close()
        follow.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follow
        for conn in list(state.conns):
            if conn.transport is not None:
                conn.transport.close()
        await follower.aclose()
        state.stop()


def run_loop(coro_factory: object) -> None:
    assert callable(coro_factory)
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro_factory())
    else:
        uvloop.run(coro_factory())


def serve(config: GatewayConfig, routes: Sequence[Route] = ()) -> int:
    """Run the gateway until SIGTERM or SIGINT. Returns the exit status."""
    workers = config.workers if config.workers > 0 else (os.cpu_count() or 1)  # 0: one per CPU
    config = dataclasses.replace(config, workers=workers)
    sock = bind(config.listen, reuse_port=workers > 1)
    if workers == 1:
        run_loop(lambda: run_worker(config, routes, sock, worker=0, share_dir="", announce=True))
        return 0
    share_dir = tempfile.mkdtemp(prefix="roost-gateway-")
    address = sock.getsockname()
    listen = f"[{address[0]}]:{address[1]}" if ":" in address[0] else f"{address[0]}:{address[1]}"
    children: list[int] = []
    for i in range(workers):
        pid = os.fork()
        if pid == 0:  # worker
            status = 0
            try:
                own = sock if i == 0 else bind(listen, reuse_port=True)
                if i != 0:
                    sock.close()
                run_loop(
                    lambda own=own, i=i: run_worker(
                        config, routes, own, worker=i, share_dir=share_dir, announce=False
                    )
                )
            except BaseException as exc:
                print(f"roost gateway: worker {i} failed: {exc!r}", file=sys.stderr, flush=True)
                status = 1
            finally:
                os._exit(status)
        children.append(pid)
    print(
        f"roost gateway: listening on http://{display(sock)} ({workers} workers, agent {config.agent_addr})",
        flush=True,
    )
    sock.close()

    def forward(signum: int, _frame: object) -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    for pid in children:
        while True:
            try:
                _, code = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
        status = status or os.waitstatus_to_exitcode(code)
    shutil.rmtree(share_dir, ignore_errors=True)
    return 0 if status in (0, -signal.SIGTERM) else 1
