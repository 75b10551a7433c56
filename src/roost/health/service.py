"""Health endpoints, self-registration and graceful shutdown for Python services.

What a service gets::

    health = Health("orders")
    health.add_dependency("db", ping_database, timeout=1.0)   # async (or plain) callable

    lifecycle = Lifecycle(health, Registration("orders", port=8000))

    # ASGI (Starlette / FastAPI): endpoints, in-flight tracking, registration in the lifespan,
    # and SIGTERM handled as below.
    app.add_middleware(HealthMiddleware, health=health, lifecycle=lifecycle)

    # WSGI (Flask): endpoints and in-flight tracking; registration and SIGTERM around the server.
    wsgi = HealthWSGI(flask_app, health)
    with lifecycle.running():
        server.run()

Endpoints (under ``/health`` by default; every body is JSON):

* ``GET /health/live``: 200 ``{"status": "passing"}`` while the process answers.
* ``GET /health/ready``: 200 when every dependency check passes and the service is not draining,
  503 otherwise: ``{"status": "passing"|"critical", "draining": false, "checks": {"db":
  {"status": "passing", "latency_ms": 1.2}, "cache": {"status": "critical", "latency_ms": 500.3,
  "error": "timed out after 0.5s"}}}``.
* ``GET /health``: the same, plus ``"service"``, ``"uptime_s"`` and ``"inflight"``; same status code.

Dependency checks run concurrently, each under its own timeout; one fails by raising or by
returning ``False``.

On SIGTERM the lifecycle marks the service not ready, deregisters it from the agent (a TTL check
stops heartbeating with it), keeps serving for ``Registration.drain`` seconds so that callers
with a cached list move away, waits (at most ``Registration.grace`` seconds) for in-flight
requests to finish, and then lets the server stop as it would have on SIGTERM.

Registration talks to the agent's Consul-compatible HTTP API with httpx, so it works against
roost or Consul. It imports nothing from the agent side.
"""

from __future__ import annotations

import _thread
import asyncio
import contextlib
import inspect
import logging
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import httpx
import orjson

from roost.config import agent_http_addr

log = logging.getLogger("roost.health.service")

DependencyCheck = Callable[[], Awaitable[object] | object]

PASSING, CRITICAL = "passing", "critical"

# -- the core: dependency checks, readiness, draining, in-flight count -----------------------


@dataclass(frozen=True, slots=True)
class DependencyResult:
    name: str
    ok: bool
    latency_ms: float
    error: str = ""

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"status": PASSING if self.ok else CRITICAL, "latency_ms": self.latency_ms}
        if self.error:
            out["error"] = self.error
        return out


class Health:
    """A service's health: its dependency checks, whether it is draining, what is in flight.

    Args:
        service: the service's name, shown by the detailed endpoint.
        clock: monotonic seconds (for uptime and latencies).
    """

    def __init__(self, service: str = "", *, clock: Callable[[], float] = time.monotonic) -> None:
        self.service = service
        self.clock = clock
        self.started = clock()
        self.draining = False
        self._deps: dict[str, tuple[DependencyCheck, float]] = {}
        self._inflight = 0
        self._lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()

    # dependencies

    def add_dependency(self, name: str, check: DependencyCheck, *, timeout: float = 2.0) -> None:
        """Register a dependency check: an async (or plain) callable that raises or returns False
        when the dependency is unusable. Plain callables run in a worker thread."""
        self._deps[name] = (check, timeout)

    def dependency(
        self, name: str = "", *, timeout: float = 2.0
    ) -> Callable[[DependencyCheck], DependencyCheck]:
        """Decorator form of :meth:`add_dependency`."""

        def register(check: DependencyCheck) -> DependencyCheck:
            self.add_dependency(name or getattr(check, "__name__", "dependency"), check, timeout=timeout)
            return check

        return register

    async def _run_one(self, name: str, check: DependencyCheck, timeout: float) -> DependencyResult:
        start = self.clock()
        error = ""
        try:
            async with asyncio.timeout(timeout):
                if inspect.iscoroutinefunction(check):
                    result = await check()
                else:
                    result = await asyncio.to_thread(check)
                    if inspect.isawaitable(result):
                        result = await result
            ok = result is not False
            if not ok:
                error = "check returned False"
        except TimeoutError:
            ok, error = False, f"timed out after {timeout:g}s"
        except Exception as exc:
            ok, error = False, f"{type(exc).__name__}: {exc}"[:500]
        latency = round((self.clock() - start) * 1000, 3)
        return DependencyResult(name, ok, latency, error)

    async def check_dependencies(self) -> list[DependencyResult]:
        """Run every dependency check concurrently, each under its own timeout."""
        return list(await asyncio.gather(*(self._run_one(n, c, t) for n, (c, t) in self._deps.items())))

    # endpoints: (HTTP status, JSON body)

    def live(self) -> tuple[int, dict[str, object]]:
        return 200, {"status": PASSING}

    async def ready(self) -> tuple[int, dict[str, object]]:
        results = await self.check_dependencies()
        ok = not self.draining and all(r.ok for r in results)
        body: dict[str, object] = {
            "status": PASSING if ok else CRITICAL,
            "draining": self.draining,
            "checks": {r.name: r.to_json() for r in results},
        }
        return (200 if ok else 503), body

    async def detailed(self) -> tuple[int, dict[str, object]]:
        code, body = await self.ready()
        return code, {
            "status": body["status"],
            "service": self.service,
            "uptime_s": round(self.clock() - self.started, 3),
            "draining": self.draining,
            "inflight": self.inflight,
            "checks": body["checks"],
        }

    async def endpoint(self, path: str, prefix: str = "/health") -> tuple[int, dict[str, object]] | None:
        """The response for a health path, or None when `path` is not one."""
        if path == prefix or path == prefix + "/":
            return await self.detailed()
        if path == prefix + "/live":
            return self.live()
        if path == prefix + "/ready":
            return await self.ready()
        return None

    # draining and in-flight requests (thread-safe: WSGI servers call from worker threads)

    def begin_drain(self) -> None:
        """From now on readiness fails; requests are still served."""
        self.draining = True

    @property
    def inflight(self) -> int:
        return self._inflight

    def request_started(self) -> None:
        with self._lock:
            self._inflight += 1
            self._idle.clear()

    def request_finished(self) -> None:
        with self._lock:
            self._inflight -= 1
            if self._inflight <= 0:
                self._inflight = 0
                self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is in flight (or `timeout` seconds); whether it got idle."""
        deadline = self.clock() + timeout
        while self._inflight > 0:
            if self.clock() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True


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


# -- ASGI -------------------------------------------------------------------------------------

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def _send_json(send: Send, status: int, body: dict[str, object]) -> None:
    payload = orjson.dumps(body)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    headers.append((b"cache-control", b"no-store"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class HealthMiddleware:
    """ASGI middleware: serves the health endpoints, counts in-flight requests, asks clients to
    close keep-alive connections while draining, and (with a `lifecycle`) registers in the
    lifespan startup, drains on SIGTERM and deregisters at shutdown.

    Works with ``app.add_middleware(HealthMiddleware, health=..., lifecycle=...)`` in Starlette
    and FastAPI, or wrapping any ASGI app.
    """

    def __init__(
        self,
        app: ASGIApp,
        health: Health,
        lifecycle: Lifecycle | None = None,
        *,
        prefix: str = "/health",
        handle_sigterm: bool = True,
    ) -> None:
        self.app = app
        self.health = health
        self.lifecycle = lifecycle
        self.prefix = prefix.rstrip("/")
        self.handle_sigterm = handle_sigterm

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if path.startswith(self.prefix) and scope.get("method") in ("GET", "HEAD"):
            answer = await self.health.endpoint(path, self.prefix)
            if answer is not None:
                await _send_json(send, *answer)
                return
        health = self.health

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start" and health.draining:
                message = {**message, "headers": [*message.get("headers", ()), (b"connection", b"close")]}
            await send(message)

        health.request_started()
        try:
            await self.app(scope, receive, send_closing)
        finally:
            health.request_finished()

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        lifecycle = self.lifecycle
        inner_started = False

        async def receive_wrapped() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown" and lifecycle is not None:
                await lifecycle.stop()
            return message

        async def send_wrapped(message: Message) -> None:
            nonlocal inner_started
            if message["type"] == "lifespan.startup.complete":
                inner_started = True
                if lifecycle is not None:
                    await lifecycle.start(handle_sigterm=self.handle_sigterm)
            await send(message)

        try:
            await self.app(scope, receive_wrapped, send_wrapped)
        except Exception:
            if inner_started:
                raise
            # The app has no lifespan support: run ours alone.
            message = await receive()
            if lifecycle is not None:
                await lifecycle.start(handle_sigterm=self.handle_sigterm)
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
            if message["type"] == "lifespan.shutdown" and lifecycle is not None:
                await lifecycle.stop()
            await send({"type": "lifespan.shutdown.complete"})


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


__all__ = [
    "DependencyResult",
    "Health",
    "HealthMiddleware",
    "HealthWSGI",
    "Lifecycle",
    "Registration",
]
