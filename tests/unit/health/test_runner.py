"""The runner shell over an in-memory catalog with a scripted probe (no sockets)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from roost.catalog.catalog import Catalog
from roost.config import AgentConfig
from roost.health.probes import ProbeResult, Probes
from roost.health.runner import HealthRunner
from roost.model import CheckDefinition, CheckKind, Service, Status
from roost.store.memory import MemoryStore


class ScriptedProbes(Probes):
    """Answers each probe with the next scripted status (the last one repeats)."""

    def __init__(self, statuses: list[Status]) -> None:
        super().__init__()
        self.statuses = statuses
        self.calls = 0

    async def run(self, definition: CheckDefinition, timeout: float | None = None) -> ProbeResult:
        status = self.statuses[min(self.calls, len(self.statuses) - 1)]
        self.calls += 1
        return ProbeResult(status, f"probe {self.calls}: {status.value}")


@contextlib.asynccontextmanager
async def running(probes: Probes) -> AsyncIterator[Catalog]:
    catalog = Catalog(MemoryStore(), node="n1")
    await catalog.start()
    runner = HealthRunner(catalog, config=AgentConfig(node_name="n1", flap_threshold=0), probes=probes)
    await runner.start()
    try:
        yield catalog
    finally:
        await runner.stop()
        await catalog.stop()


def http_check(interval: float, **kw: object) -> CheckDefinition:
    return CheckDefinition(
        "c1",
        "c1",
        CheckKind.HTTP,
        service_id="s1",
        http="http://127.0.0.1:9/",
        interval=interval,
        **kw,  # type: ignore[arg-type]
    )


async def test_first_probe_right_after_registration() -> None:
    """A check registered with a long interval is probed at once, not one interval later."""
    probes = ScriptedProbes([Status.PASSING])
    async with running(probes) as catalog:
        await catalog.register(Service("s1", "web"), [http_check(60)])
        for _ in range(100):
            if catalog.check("c1").status is Status.PASSING:
                break
            await asyncio.sleep(0.01)
        assert catalog.check("c1").status is Status.PASSING
        assert probes.calls == 1


async def test_only_status_changes_move_the_index() -> None:
    """Repeated probes with the same status refresh the output without moving the index."""
    probes = ScriptedProbes([Status.PASSING])
    async with running(probes) as catalog:
        await catalog.register(Service("s1", "web"), [http_check(0.05)])
        while probes.calls < 2:
            await asyncio.sleep(0.01)
        index = catalog.state.index
        while probes.calls < 6:
            await asyncio.sleep(0.01)
        assert catalog.state.index == index
        assert catalog.check("c1").output.startswith("probe ")


async def test_deregistering_stops_the_probes() -> None:
    """Removing the service cancels its check's task."""
    probes = ScriptedProbes([Status.PASSING])
    async with running(probes) as catalog:
        await catalog.register(Service("s1", "web"), [http_check(0.05)])
        while probes.calls < 2:
            await asyncio.sleep(0.01)
        await catalog.deregister("s1")
        calls = probes.calls
        await asyncio.sleep(0.2)
        assert probes.calls == calls


async def test_deregister_critical_service_after() -> None:
    """A check critical past DeregisterCriticalServiceAfter removes its service."""
    probes = ScriptedProbes([Status.CRITICAL])
    async with running(probes) as catalog:
        await catalog.register(Service("s1", "web"), [http_check(0.05, deregister_after=0.3)])
        for _ in range(200):
            if "s1" not in catalog.state.services:
                break
            await asyncio.sleep(0.01)
        assert "s1" not in catalog.state.services
