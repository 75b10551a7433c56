"""The asyncio shell that runs the agent's checks: TTL expiry and DeregisterCriticalServiceAfter.

It follows the catalog's check definitions (added, changed, removed) and only runs the checks of
services this agent owns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from roost.catalog.catalog import Catalog
from roost.errors import NotFound, ValidationError
from roost.model import Check, CheckKind, Status

log = logging.getLogger("roost.health")

TICK = 0.25


class HealthRunner:
    def __init__(self, catalog: Catalog, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.catalog = catalog
        self.clock = clock
        self._ttl_deadline: dict[str, float] = {}
        self._critical_since: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        catalog.state.check_listeners.append(self._on_check)

    def owns(self, check: Check) -> bool:
        if not check.service_id:
            return True
        svc = self.catalog.state.services.get(check.service_id)
        return svc is None or svc.owner in ("", self.catalog.node)

    async def start(self) -> None:
        for check_id, check in list(self.catalog.state.checks.items()):
            self._on_check(check_id, None, check)
        self._task = asyncio.create_task(self._loop(), name="roost-health")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _on_check(self, check_id: str, old: Check | None, new: Check | None) -> None:
        if new is None or not self.owns(new):
            self._ttl_deadline.pop(check_id, None)
            self._critical_since.pop(check_id, None)
            return
        d = new.definition
        if d.kind is CheckKind.TTL and d.ttl:
            self._ttl_deadline[check_id] = self.clock() + d.ttl
        else:
            self._ttl_deadline.pop(check_id, None)

    async def ttl_update(self, check_id: str, status: Status, output: str) -> None:
        """A TTL heartbeat (PUT /v1/agent/check/pass|warn|fail|update)."""
        check = self.catalog.check(check_id)
        if check.definition.kind is not CheckKind.TTL or not check.definition.ttl:
            raise ValidationError(f"check {check_id!r} is not a TTL check", field="CheckID")
        self._ttl_deadline[check_id] = self.clock() + check.definition.ttl
        await self.catalog.set_check_status(check_id, status, output)

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
        state = self.catalog.state
        for check_id, deadline in list(self._ttl_deadline.items()):
            check = state.checks.get(check_id)
            if check is None:
                self._ttl_deadline.pop(check_id, None)
                continue
            if now >= deadline and check.status is not Status.CRITICAL:
                ttl = check.definition.ttl or 0
                with contextlib.suppress(NotFound):
                    await self.catalog.set_check_status(
                        check_id, Status.CRITICAL, f"TTL expired (last update more than {ttl:g}s ago)"
                    )
        for check_id, check in list(state.checks.items()):
            after = check.definition.deregister_after
            if after is None or not check.service_id or not self.owns(check):
                continue
            if check.status is not Status.CRITICAL:
                self._critical_since.pop(check_id, None)
                continue
            since = self._critical_since.setdefault(check_id, now)
            if now - since >= after and check.service_id in state.services:
                log.info(
                    "deregistering service %s: check %s critical for more than %gs",
                    check.service_id,
                    check_id,
                    after,
                )
                self._critical_since.pop(check_id, None)
                with contextlib.suppress(NotFound):
                    await self.catalog.deregister(check.service_id)
