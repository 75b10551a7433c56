"""The composition root: store -> catalog -> health runner -> HTTP API and DNS."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import signal
import socket
from collections.abc import Callable

import uvicorn

from roost.api.app import AgentApp
from roost.catalog.catalog import Catalog
from roost.config import AgentConfig, split_host_port
from roost.dns import DnsServer
from roost.health.runner import HealthRunner
from roost.store import open_store

log = logging.getLogger("roost.agent")


def bind(addr: str, default_port: int, kind: int = socket.SOCK_STREAM) -> socket.socket:
    host, port = split_host_port(addr, default_port)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    if kind == socket.SOCK_STREAM:
        sock.listen(4096)
    sock.setblocking(False)
    return sock


def raise_open_file_limit() -> None:
    """Blocking queries hold a socket each: let 10,000 watchers in, up to the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft != resource.RLIM_INFINITY and soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.store = open_store(config)
        self.catalog = Catalog(self.store, node=config.node_name)
        self.runner = HealthRunner(self.catalog, config=config)
        self.app = AgentApp(self.catalog, self.runner, config)
        self._server: uvicorn.Server | None = None
        self._server_task: asyncio.Task[None] | None = None
        self.http_address = ""
        self.dns_address = ""
        self._dns: DnsServer | None = None

    async def start(self) -> None:
        raise_open_file_limit()
        await self.store.open()
        await self.catalog.start()
        await self.runner.start()
        http_sock = bind(self.config.http_addr, 8500)
        host, port = http_sock.getsockname()[:2]
        self.http_address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        uv_config = uvicorn.Config(
            self.app,
            lifespan="off",
            log_level="warning",
            access_log=False,
            http="httptools",
            loop="none",
            timeout_keep_alive=65,
            proxy_headers=False,  # the API never looks at the client address: skip the middleware
            server_header=False,
            timeout_graceful_shutdown=2,
            backlog=4096,
        )
        uv_config.load()
        self._server = uvicorn.Server(uv_config)
        self._server.lifespan = uv_config.lifespan_class(uv_config)
        await self._server.startup(sockets=[http_sock])
        self._server_task = asyncio.create_task(self._server.main_loop(), name="roost-http")
        if self.config.dns_addr:
            self._dns = DnsServer(self.catalog.state, self.config)
            self.dns_address = await self._dns.start()

    async def stop(self) -> None:
        if self._dns is not None:
            await self._dns.stop()
            self._dns = None
        if self._server is not None:
            self._server.should_exit = True
            if self._server_task is not None:
                await self._server_task
            # Wake every blocking query so connections can close now rather than at their wait.
            self.catalog.state.topics.close()
            with contextlib.suppress(Exception):
                await self._server.shutdown()
            self._server = None
        await self.runner.stop()
        await self.catalog.stop()
        await self.store.close()

    async def run(self) -> None:
        """Start, print where we listen, serve until SIGTERM or SIGINT, then stop cleanly."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        print(f"roost agent: node {self.config.node_name}, store {self.store.name}", flush=True)
        print(f"roost agent: HTTP API on http://{self.http_address}", flush=True)
        if self.dns_address:
            print(f"roost agent: DNS on {self.dns_address} (udp and tcp)", flush=True)
        await stop.wait()
        log.info("shutting down")
        await self.stop()
        print("roost agent: stopped", flush=True)


def run_agent(config: AgentConfig) -> None:
    with asyncio.Runner(loop_factory=new_event_loop()) as runner:
        runner.run(Agent(config).run())


def new_event_loop() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's loop factory where uvloop is installed, asyncio's otherwise."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency, but stay runnable without it
        return asyncio.new_event_loop
    return uvloop.new_event_loop
