"""The asyncio shell that runs the agent's checks: probes on a schedule, TTL expiry, and the
timers of the check machines (flap settling, DeregisterCriticalServiceAfter).

It follows the catalog's check definitions (added, changed, removed) and only runs the checks of
services this agent owns. All judgement lives in :mod:`roost.health.checks`; this module only
sleeps, probes and writes.

Scheduling: each active check is one task. A check registered while the agent runs is probed
right away (within a few hundred milliseconds of jitter), then a second time after a random part
of its interval, and from then on every interval: so 10,000 checks registered in a burst, or
loaded at start-up (spread over their first interval), do not fire together.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable

from roost.catalog.catalog import Catalog
from roost.config import AgentConfig
from roost.errors import NotFound, ValidationError
from roost.health.checks import CheckMachine, Deregister, Effect, Report, Thresholds
from roost.health.guard import CheckPolicy
from roost.health.probes import Probes, probe_timeout
from roost.model import Check, CheckDefinition, CheckKind, Status

log = logging.getLogger("roost.health")

TICK = 0.25
FIRST_PROBE_JITTER = 0.25  # seconds, at most: how soon after registration the first probe runs
ACTIVE = (CheckKind.HTTP, CheckKind.TCP, CheckKind.GRPC, CheckKind.SCRIPT)


class HealthRunner:
    """Runs the checks of the services this agent owns.

    Args:
        catalog: where definitions come from and results go.
        config: the agent's health options (allowed CIDRs, script checks, flap damping).
        clock: the machines' clock (monotonic seconds).
        probes: the prober; one is built from `config` when not given.
    """

    def __init__(
        self,
        catalog: Catalog,
        *,
        config: AgentConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
        probes: Probes | None = None,
    ) -> None:
        config = config or AgentConfig()
        self.catalog = catalog
        self.clock = clock
        self.policy = CheckPolicy(config.check_allow_cidrs, enable_script_checks=config.enable_script_checks)
        self.probes = probes or Probes(self.policy)
        self.flap_threshold = config.flap_threshold
        self.flap_window = config.flap_window
        self.probe_count = 0
        self._machines: dict[str, CheckMachine] = {}
        self._definitions: dict[str, CheckDefinition] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._ttl_deadline: dict[str, float] = {}
        self._timed: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._started = False
        self._random = random.Random()
        catalog.state.check_listeners.append(self._on_check)
        catalog.check_guards.append(self.policy)

    def owns(self, check: Check) -> bool:
        if not check.service_id:
            return True
        svc = self.catalog.state.services.get(check.service_id)
        return svc is None or svc.owner in ("", self.catalog.node)

    async def start(self) -> None:
        self._started = True
        for check_id, check in list(self.catalog.state.checks.items()):
            if check_id not in self._definitions:
                self._add(check, fresh=False)
        self._task = asyncio.create_task(self._loop(), name="roost-health")

    async def stop(self) -> None:
        self._started = False
        tasks = [t for t in (self._task, *self._tasks.values()) if t is not None]
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.probes.close()

    # -- following the catalog ---------------------------------------------------------------

    def _on_check(self, check_id: str, old: Check | None, new: Check | None) -> None:
        if new is None or not self.owns(new):
            self._drop(check_id)
            return
        if self._definitions.get(check_id) == new.definition:
            return  # a status or output change (often our own write): nothing to reschedule
        self._drop(check_id)
        if self._started:
            self._add(new, fresh=True)

    def _drop(self, check_id: str) -> None:
        self._definitions.pop(check_id, None)
        self._machines.pop(check_id, None)
        self._ttl_deadline.pop(check_id, None)
        self._timed.discard(check_id)
        task = self._tasks.pop(check_id, None)
        if task is not None:
            task.cancel()

    def _add(self, check: Check, *, fresh: bool) -> None:
        d = check.definition
        if d.kind is CheckKind.TTL and d.ttl:
            # TTL results come from the service itself: no thresholds, only flap damping and
            # deregister-after.
            limits = Thresholds(
                deregister_after=d.deregister_after or None,
                flap_threshold=self.flap_threshold,
                flap_window=self.flap_window,
            )
        elif d.kind in ACTIVE and d.interval:
            limits = Thresholds.of(d, flap_threshold=self.flap_threshold, flap_window=self.flap_window)
        else:
            return
        now = self.clock()
        machine = CheckMachine(limits, status=check.status, now=now)
        self._definitions[d.id] = d
        self._machines[d.id] = machine
        self._track(d.id, machine)
        if d.kind is CheckKind.TTL:
            self._ttl_deadline[d.id] = now + (d.ttl or 0)
            return
        interval = d.interval or 10.0
        if fresh:
            first = self._random.uniform(0, min(FIRST_PROBE_JITTER, interval / 4))
        else:
            first = self._random.uniform(0, interval)
        self._tasks[d.id] = asyncio.create_task(
            self._run(d, machine, first, fresh), name=f"roost-check:{d.id}"
        )

    def _track(self, check_id: str, machine: CheckMachine) -> None:
        if machine.needs_tick:
            self._timed.add(check_id)
        else:
            self._timed.discard(check_id)

    # -- active checks -----------------------------------------------------------------------

    async def _run(self, d: CheckDefinition, machine: CheckMachine, first: float, fresh: bool) -> None:
        loop = asyncio.get_running_loop()
        interval = d.interval or 10.0
        timeout = probe_timeout(d)
        due = loop.time() + first
        while True:
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            result = await self.probes.run(d, timeout)
            self.probe_count += 1
            try:
                await self._apply(d.id, machine.observe(result.status, result.output, now=self.clock()))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("recording the result of check %s failed", d.id)
            self._track(d.id, machine)
            if fresh:  # from the second probe on, each check keeps its own phase in the interval
                due += self._random.uniform(0.05, 1.0) * interval
                fresh = False
            else:
                due += interval
            now = loop.time()
            if due < now:  # fell behind (a slow probe, a busy loop): skip, keeping the phase
                due += ((now - due) // interval + 1) * interval

    async def _apply(self, check_id: str, effects: list[Effect]) -> None:
        for effect in effects:
            match effect:
                case Report(status, output, flapping):
                    try:
                        await self.catalog.set_check_status(check_id, status, output, flapping=flapping)
                    except NotFound:
                        return
                case Deregister(reason):
                    check = self.catalog.state.checks.get(check_id)
                    service_id = check.service_id if check is not None else ""
                    if not service_id or service_id not in self.catalog.state.services:
                        continue
                    log.info("deregistering service %s: check %s %s", service_id, check_id, reason)
                    with contextlib.suppress(NotFound):
                        await self.catalog.deregister(service_id)
                    return

    # -- TTL checks and timers ---------------------------------------------------------------

    async def ttl_update(self, check_id: str, status: Status, output: str) -> None:
        """A TTL heartbeat (PUT /v1/agent/check/pass|warn|fail|update)."""
        check = self.catalog.check(check_id)
        if check.definition.kind is not CheckKind.TTL or not check.definition.ttl:
            raise ValidationError(f"check {check_id!r} is not a TTL check", field="CheckID")
        machine = self._machines.get(check_id)
        if machine is None:  # not ours to judge (another agent's service): record as given
            await self.catalog.set_check_status(check_id, status, output)
            return
        now = self.clock()
        self._ttl_deadline[check_id] = now + check.definition.ttl
        await self._apply(check_id, machine.observe(status, output, now=now))
        self._track(check_id, machine)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            try:
                await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("health tick failed")

    async def _tick(self) -> None:
        now = self.clock()
        for check_id, deadline in list(self._ttl_deadline.items()):
            machine, d = self._machines.get(check_id), self._definitions.get(check_id)
            if machine is None or d is None or now < deadline:
                continue
            self._ttl_deadline.pop(check_id, None)  # until the next heartbeat
            ttl = d.ttl or 0
            output = f"TTL expired (last update more than {ttl:g}s ago)"
            await self._apply(check_id, machine.observe(Status.CRITICAL, output, now=now))
            self._track(check_id, machine)
        for check_id in list(self._timed):
            machine = self._machines.get(check_id)
            if machine is None:
                self._timed.discard(check_id)
                continue
            await self._apply(check_id, machine.tick(now=now))
            self._track(check_id, machine)
