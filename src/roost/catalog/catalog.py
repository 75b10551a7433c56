"""The catalog shell: writes go through the store, the store's change stream feeds the state.

Writers (HTTP API, health runner) call the async methods here; they return once the change is
durable *and* visible in `state`, so a client that got a 200 reads its own write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable

import orjson

from roost.catalog.state import CatalogState, check_key, service_key
from roost.errors import NotFound, StoreUnavailable, ValidationError
from roost.model import Check, CheckDefinition, CheckKind, Service, Status
from roost.model.health import MAINTENANCE_PREFIX, NODE_MAINTENANCE_ID
from roost.model.validate import MAX_CHECKS_PER_SERVICE, MAX_OUTPUT, validate_check, validate_service
from roost.store.protocol import Compacted, Store

log = logging.getLogger("roost.catalog")

APPLY_TIMEOUT = 30.0  # seconds a stored write may take to come back through the store's feed


def _encode(obj: Service | Check) -> bytes:
    return orjson.dumps(obj.to_dict())


class Catalog:
    def __init__(self, store: Store, *, node: str) -> None:
        self.store = store
        self.node = node
        self.state = CatalogState(node)
        self._follower: asyncio.Task[None] | None = None
        self._applied: list[tuple[int, asyncio.Future[None]]] = []
        # Agent policy on top of validate_check (e.g. the health runner's allowed CIDRs): each
        # raises ValidationError to refuse a check before anything is stored.
        self.check_guards: list[Callable[[CheckDefinition], None]] = []

    async def start(self) -> None:
        index, data = await self.store.snapshot()
        self.state.load(index, data)
        self._follower = asyncio.create_task(self._follow(), name="roost-catalog-follow")

    async def stop(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
            self._follower = None

    async def _follow(self) -> None:
        while True:
            try:
                async for batch in self.store.follow(self.state.index):
                    self.state.apply(batch)
                    self._release()
            except Compacted:
                log.warning("store history compacted; reloading the catalog from a snapshot")
                index, data = await self.store.snapshot()
                self.state.load(index, data)
                self._release()
            except asyncio.CancelledError:
                raise
            except Exception:  # the store reconnects on its own; keep following
                log.exception("catalog follow failed; retrying")
                await asyncio.sleep(0.5)

    def _release(self) -> None:
        index = self.state.index
        keep = []
        for want, future in self._applied:
            if want <= index:
                if not future.done():
                    future.set_result(None)
            else:
                keep.append((want, future))
        self._applied = keep

    async def _write(self, writes: dict[str, bytes | None]) -> int:
        index = await self.store.apply(writes)
        if self.state.index < index:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._applied.append((index, future))
            try:
                await asyncio.wait_for(future, APPLY_TIMEOUT)
            except TimeoutError:
                raise StoreUnavailable(
                    f"the write was stored at index {index} but did not come back through the "
                    f"store's change feed within {APPLY_TIMEOUT:.0f}s"
                ) from None
        return index

    # -- services ----------------------------------------------------------------------------

    async def register(
        self,
        service: Service,
        checks: Iterable[CheckDefinition] = (),
        *,
        replace_existing_checks: bool = False,
    ) -> int:
        """Register or replace an instance and its checks in one atomic write."""
        validate_service(service)
        checks = list(checks)
        if len(checks) > MAX_CHECKS_PER_SERVICE:
            raise ValidationError(
                f"a service may have at most {MAX_CHECKS_PER_SERVICE} checks", field="Service.Checks"
            )
        seen: set[str] = set()
        for check in checks:
            validate_check(check)
            for guard in self.check_guards:
                guard(check)
            if check.id in seen:
                raise ValidationError(f"duplicate CheckID {check.id!r}", field="Check.CheckID")
            seen.add(check.id)
        state = self.state
        writes: dict[str, bytes | None] = {}
        old_key = state.service_keys.get(service.id)
        new_key = service_key(service.name, service.id)
        if old_key is not None and old_key != new_key:
            writes[old_key] = None
        writes[new_key] = _encode(service)
        for definition in checks:
            existing = state.checks.get(definition.id)
            if existing is not None and existing.service_id not in ("", service.id):
                raise ValidationError(
                    f"CheckID {definition.id!r} already belongs to service {existing.service_id!r}",
                    field="Check.CheckID",
                )
            writes[check_key(definition.id)] = _encode(self._new_check(definition, existing))
        if replace_existing_checks:
            for check_id in state.checks_of.get(service.id, ()):
                if check_id not in seen and not check_id.startswith(MAINTENANCE_PREFIX):
                    writes[check_key(check_id)] = None
        return await self._write(writes)

    @staticmethod
    def _new_check(definition: CheckDefinition, existing: Check | None) -> Check:
        # Re-registering an unchanged check keeps its status, so a redeploy that re-registers
        # does not flap every instance to critical.
        if existing is not None and existing.definition == definition:
            return existing
        status = definition.initial_status
        if existing is not None and existing.definition.kind == definition.kind:
            status = existing.status
        return Check(definition, status, "")

    async def deregister(self, service_id: str) -> int:
        state = self.state
        key = state.service_keys.get(service_id)
        if key is None:
            raise NotFound(f"unknown service ID {service_id!r}")
        writes: dict[str, bytes | None] = {key: None}
        for check_id in state.checks_of.get(service_id, ()):
            writes[check_key(check_id)] = None
        return await self._write(writes)

    def service(self, service_id: str) -> Service:
        svc = self.state.services.get(service_id)
        if svc is None:
            raise NotFound(f"unknown service ID {service_id!r}")
        return svc

    # -- checks ------------------------------------------------------------------------------

    async def register_check(self, definition: CheckDefinition) -> int:
        validate_check(definition)
        for guard in self.check_guards:
            guard(definition)
        if definition.service_id and definition.service_id not in self.state.services:
            raise NotFound(f"ServiceID {definition.service_id!r} is not registered")
        if definition.service_id:
            count = len(self.state.checks_of.get(definition.service_id, ()))
            if count >= MAX_CHECKS_PER_SERVICE and definition.id not in self.state.checks:
                raise ValidationError(
                    f"a service may have at most {MAX_CHECKS_PER_SERVICE} checks", field="CheckID"
                )
        existing = self.state.checks.get(definition.id)
        check = self._new_check(definition, existing)
        return await self._write({check_key(definition.id): _encode(check)})

    async def deregister_check(self, check_id: str) -> int:
        if check_id not in self.state.checks:
            raise NotFound(f"unknown check ID {check_id!r}")
        return await self._write({check_key(check_id): None})

    def check(self, check_id: str) -> Check:
        check = self.state.checks.get(check_id)
        if check is None:
            raise NotFound(f"unknown check ID {check_id!r}")
        return check

    async def set_check_status(
        self, check_id: str, status: Status, output: str, *, flapping: bool | None = None
    ) -> bool:
        """Record a check result. Only a change of status (or of flapping) is written and moves the
        index; an output-only change is kept in memory. Returns whether the index moved."""
        check = self.check(check_id)
        output = output[:MAX_OUTPUT]
        if check.status == status and (flapping is None or flapping == check.flapping):
            self.state.set_output(check_id, output)
            return False
        await self._write(
            {check_key(check_id): _encode(check.with_status(status, output, flapping=flapping))}
        )
        return True

    # -- maintenance -------------------------------------------------------------------------

    async def set_maintenance(self, service_id: str | None, enable: bool, reason: str) -> int:
        """Service (or, with None, node) maintenance: a critical check, as Consul does it."""
        if service_id is not None:
            svc = self.service(service_id)
            check_id = MAINTENANCE_PREFIX + svc.id
            name = "Service Maintenance Mode"
        else:
            check_id, name = NODE_MAINTENANCE_ID, "Node Maintenance Mode"
        if not enable:
            if check_id not in self.state.checks:
                return self.state.index
            return await self._write({check_key(check_id): None})
        output = (
            reason
            or "Maintenance mode is enabled for this service, but no reason was provided. "
            "This is a default message."
        )
        check = Check(
            CheckDefinition(
                check_id,
                name,
                CheckKind.MANUAL,
                service_id=service_id or "",
                notes=reason or "",
            ),
            Status.CRITICAL,
            output[:MAX_OUTPUT],
        )
        return await self._write({check_key(check_id): _encode(check)})
