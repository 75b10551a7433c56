"""The core of a service's health: dependency checks, readiness, draining, in-flight requests."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

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
