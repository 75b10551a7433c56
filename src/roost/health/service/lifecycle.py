"""Registration with the agent and the SIGTERM drain around a running server."""

from __future__ import annotations

import _thread
import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import httpx

from roost.config import agent_http_addr
from roost.health.service.core import Health

log = logging.getLogger("roost.health.service")


# -- registration with the agent --------------------------------------------------------------


def _duration(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


@dataclass(frozen=True)
class Registration:
    """How the service registers itself with the agent (Consul's /v1/agent/service/register).

    Args:
        name: the service name.
        port: the port it serves on.
        address: the address callers should use.
        service_id: unique per instance (default ``name-address-port``).
        check: ``"http"`` (the agent probes `health_url`), ``"ttl"`` (the service heartbeats) or
            ``"none"``.
        health_url: what the agent probes (default ``http://address:port/health/ready``).
        interval, timeout: of the HTTP check; ttl: of the TTL check (heartbeats every ttl/3).
        deregister_after: DeregisterCriticalServiceAfter, so a killed instance is cleaned up.
        drain: seconds to keep serving after deregistering on SIGTERM.
        grace: at most this many more seconds for in-flight requests to finish.
        agent: the agent's address (default: ROOST_HTTP_ADDR, CONSUL_HTTP_ADDR, 127.0.0.1:8500).
    """

    name: str
    port: int
    address: str = "127.0.0.1"
    service_id: str = ""
    tags: Sequence[str] = ()
    meta: Mapping[str, str] = field(default_factory=dict)
    check: str = "http"
    health_url: str = ""
    interval: float = 1.0
    timeout: float = 1.0
    ttl: float = 10.0
    deregister_after: float | None = 60.0
    drain: float = 5.0
    grace: float = 10.0
    agent: str = ""
    token: str = ""

    @property
    def id(self) -> str:
        return self.service_id or f"{self.name}-{self.address}-{self.port}"

    @property
    def agent_url(self) -> str:
        addr = self.agent or agent_http_addr()
        return addr.rstrip("/") if addr.startswith(("http://", "https://")) else f"http://{addr}"

    def body(self) -> dict[str, object]:
        """The registration body, in Consul's shape."""
        out: dict[str, object] = {
            "Name": self.name,
            "ID": self.id,
            "Address": self.address,
            "Port": self.port,
            "Tags": list(self.tags),
            "Meta": dict(self.meta),
        }
        check: dict[str, object] = {}
        if self.check == "http":
            url = self.health_url or f"http://{self.address}:{self.port}/health/ready"
            check = {"HTTP": url, "Interval": _duration(self.interval), "Timeout": _duration(self.timeout)}
        elif self.check == "ttl":
            check = {"TTL": _duration(self.ttl)}
        elif self.check != "none":
            raise ValueError(f"Registration.check must be 'http', 'ttl' or 'none', not {self.check!r}")
        if check:
            check["CheckID"] = self.check_id
            check["Name"] = f"{self.name} readiness"
            if self.deregister_after:
                check["DeregisterCriticalServiceAfter"] = _duration(self.deregister_after)
            out["Check"] = check
        return out

    @property
    def check_id(self) -> str:
        return f"service:{self.id}"


class Lifecycle:
    """Registers the service, heartbeats a TTL check, and drains on SIGTERM.

    Use it from an ASGI lifespan (:class:`HealthMiddleware` does) or around a WSGI server with
    :meth:`running`.
    """

    def __init__(self, health: Health, registration: Registration) -> None:
        self.health = health
        self.registration = registration
        self.registered = False
        self.drained = asyncio.Event()
        self._client: httpx.AsyncClient | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._draining: asyncio.Task[None] | None = None
        self._previous: Any = None
        self._on_drained: Callable[[], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            headers = {"X-Consul-Token": self.registration.token} if self.registration.token else {}
            self._client = httpx.AsyncClient(
                base_url=self.registration.agent_url, timeout=5.0, headers=headers
            )
        return self._client

    async def register(self) -> None:
        """Register with the agent (raises httpx errors); a TTL check is marked passing at once."""
        reg = self.registration
        response = await self._http().put("/v1/agent/service/register", json=reg.body())
        response.raise_for_status()
        self.registered = True
        if reg.check == "ttl":
            await self._pass_ttl()

    async def _pass_ttl(self) -> None:
        reg = self.registration
        await self._http().put(f"/v1/agent/check/pass/{reg.check_id}", params={"note": "heartbeat"})

    async def deregister(self) -> None:
        if not self.registered:
            return
        self.registered = False
        try:
            await self._http().put(f"/v1/agent/service/deregister/{self.registration.id}")
        except httpx.HTTPError as exc:
            log.warning("could not deregister %s from the agent: %s", self.registration.id, exc)

    async def start(
        self, *, handle_sigterm: bool = True, on_drained: Callable[[], None] | None = None
    ) -> None:
        """Register (retrying in the background if the agent is not up yet), start heartbeats,
        and take over SIGTERM (main thread only)."""
        self._loop = asyncio.get_running_loop()
        try:
            await self.register()
        except httpx.HTTPError as exc:
            log.warning(
                "could not register with the agent at %s: %s; retrying", self.registration.agent_url, exc
            )
        self._heartbeat = asyncio.create_task(self._keep_registered(), name="roost-health-heartbeat")
        if handle_sigterm:
            self.install_sigterm(on_drained)

    async def _keep_registered(self) -> None:
        reg = self.registration
        period = reg.ttl / 3 if reg.check == "ttl" else 1.0
        while not self.health.draining:
            await asyncio.sleep(period)
            if self.health.draining:
                return
            try:
                if not self.registered:
                    await self.register()
                elif reg.check == "ttl":
                    await self._pass_ttl()
            except httpx.HTTPError as exc:
                log.warning("agent at %s did not answer: %s", reg.agent_url, exc)

    async def drain(self) -> None:
        """Not ready, deregistered, serve for the drain period, wait for in-flight requests."""
        if self.health.draining:
            await self.drained.wait()
            return
        reg = self.registration
        self.health.begin_drain()
        log.info("draining %s: deregistering, then serving for %gs", reg.id, reg.drain)
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        await self.deregister()
        await asyncio.sleep(reg.drain)
        if not await self.health.wait_idle(reg.grace):
            log.warning("%d requests still in flight after %gs", self.health.inflight, reg.grace)
        self.drained.set()

    async def stop(self) -> None:
        """Deregister (if still registered) and release the HTTP client."""
        self.health.begin_drain()
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        await self.deregister()
        self.restore_sigterm()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # SIGTERM

    def install_sigterm(self, on_drained: Callable[[], None] | None = None) -> None:
        """Handle SIGTERM by draining first, then calling `on_drained` (default: hand SIGTERM to
        the handler that was installed before, e.g. the server's own graceful shutdown)."""
        if threading.current_thread() is not threading.main_thread():
            return
        self._on_drained = on_drained
        self._previous = signal.signal(signal.SIGTERM, self._sigterm)

    def restore_sigterm(self) -> None:
        if self._previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def _sigterm(self, signum: int, frame: FrameType | None) -> None:
        loop = self._loop
        if loop is None or self._draining is not None:  # a second SIGTERM: stop waiting
            self._hand_over()
            return

        def begin() -> None:
            self._draining = asyncio.ensure_future(self._drain_then_stop())

        loop.call_soon_threadsafe(begin)

    async def _drain_then_stop(self) -> None:
        try:
            await self.drain()
        finally:
            self._hand_over()

    def _hand_over(self) -> None:
        on_drained = self._on_drained
        if on_drained is not None:
            on_drained()
            return
        previous = self._previous
        self.restore_sigterm()
        if callable(previous):
            previous(signal.SIGTERM, None)
        else:
            signal.raise_signal(signal.SIGTERM)

    # sync use (WSGI servers)

    @contextlib.contextmanager
    def running(self, *, on_drained: Callable[[], None] | None = None) -> Iterator[Lifecycle]:
        """Run the lifecycle on a background event loop around a blocking server::

            with lifecycle.running():
                server.run()

        On SIGTERM it drains, then calls `on_drained` (default: raise KeyboardInterrupt in the
        main thread, which stops waitress, werkzeug and most blocking servers)."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="roost-health", daemon=True)
        thread.start()

        def call(coro: Awaitable[Any]) -> None:
            future: Future[None] = asyncio.run_coroutine_threadsafe(_as_coro(coro), loop)
            future.result(timeout=30)

        call(self.start(handle_sigterm=False))
        self.install_sigterm(on_drained or _thread.interrupt_main)
        try:
            yield self
        finally:
            self.restore_sigterm()
            if self._draining is not None:  # wait for a drain that is under way
                with contextlib.suppress(Exception):
                    call(self.drained.wait())
            call(self.stop())
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)
            loop.close()


async def _as_coro(awaitable: Awaitable[Any]) -> None:
    await awaitable
