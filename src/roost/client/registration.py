"""Register this process's own instance, keep it alive, and deregister on shutdown.

:class:`AgentRegistration` registers with a roost or Consul agent with a TTL check (or an HTTP
check the agent probes), heartbeats it every ``ttl / 3`` seconds, and deregisters on exit: if the
process dies without deregistering, the TTL lapses, the check goes critical, callers stop getting
the instance, and ``deregister_after`` removes it. It is a thin front for the health module's
:class:`roost.health.service.Lifecycle` (the same code that registers services using
``HealthMiddleware``), so there is one implementation of the agent-side protocol.
:class:`EtcdRegistration` writes the ``/services/<name>/<id>`` record under a lease and keeps the lease
alive; when the process dies the lease expires and the key goes with it.

Both are async context managers::

    async with AgentRegistration("payment", port=8080, address="10.0.0.5"):
        await serve()
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from roost.client.strategies.etcd import EtcdGateway
from roost.errors import Unavailable
from roost.health.service import Health, Lifecycle, Registration

log = logging.getLogger("roost.client")


def _default_id(name: str, port: int) -> str:
    return f"{name}-{socket.gethostname().split('.')[0]}-{port}"


@dataclass(frozen=True)
class _WeightedRegistration(Registration):
    weight: int = 1

    def body(self) -> dict[str, object]:
        out = super().body()
        out["Weights"] = {"Passing": self.weight, "Warning": 1}
        return out


class AgentRegistration:
    """This instance in a roost or Consul agent, kept alive with a TTL check.

    Args:
        name: service name.
        port: the port this instance serves on.
        address: the address callers should use.
        service_id: defaults to ``<name>-<address>-<port>``.
        tags, meta, weight: as Consul's registration (weight is ``Weights.Passing``).
        agent: agent address (default ``ROOST_HTTP_ADDR``, ``CONSUL_HTTP_ADDR``, 127.0.0.1:8500).
        ttl: seconds the check stays passing without a heartbeat.
        deregister_after: the agent removes the instance after its check has been critical this long.
        http_check: instead of a TTL, let the agent probe this URL every ``interval`` seconds.
    """

    def __init__(
        self,
        name: str,
        port: int,
        *,
        address: str = "127.0.0.1",
        service_id: str = "",
        tags: Sequence[str] = (),
        meta: Mapping[str, str] | None = None,
        weight: int = 1,
        agent: str = "",
        token: str = "",
        ttl: float = 10.0,
        deregister_after: float = 60.0,
        http_check: str = "",
        interval: float = 5.0,
    ) -> None:
        self.registration = _WeightedRegistration(
            name=name,
            port=port,
            address=address,
            service_id=service_id,
            tags=tuple(tags),
            meta=dict(meta or {}),
            check="http" if http_check else "ttl",
            health_url=http_check,
            interval=interval,
            ttl=ttl,
            deregister_after=deregister_after,
            agent=agent,
            token=token,
            weight=weight,
        )
        self.lifecycle = Lifecycle(Health(name), self.registration)

    @property
    def service_id(self) -> str:
        return self.registration.id

    async def start(self) -> None:
        """Register (retried in the background while the agent is unreachable) and start heartbeats."""
        await self.lifecycle.start(handle_sigterm=False)

    async def stop(self) -> None:
        """Stop the heartbeat and deregister."""
        await self.lifecycle.stop()

    async def __aenter__(self) -> AgentRegistration:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class EtcdRegistration:
    """This instance as ``<prefix>/<name>/<id>`` in etcd, attached to a lease kept alive.

    Args:
        endpoints: etcd endpoints (``ETCD_ENDPOINTS``).
        lease_ttl: seconds the key outlives this process.
        extra: more JSON fields for the record (``{"zone": "a"}``), read back as meta.
    """

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        *,
        endpoints: Sequence[str] | str = "127.0.0.1:2379",
        service_id: str = "",
        prefix: str = "/services",
        lease_ttl: int = 10,
        tags: Sequence[str] = (),
        weight: int = 1,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.key = f"/{prefix.strip('/')}/{name}/{service_id or _default_id(name, port)}"
        self.record = {"host": host, "port": port, "tags": list(tags), "weight": weight, **(extra or {})}
        self.lease_ttl = lease_ttl
        self.etcd = EtcdGateway(endpoints)
        self.lease = 0
        self._task: asyncio.Task[None] | None = None

    async def register(self) -> None:
        self.lease = await self.etcd.grant(self.lease_ttl)
        await self.etcd.put(self.key, json.dumps(self.record), self.lease)

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(self.lease_ttl / 3)
            try:
                if await self.etcd.keepalive(self.lease) <= 0:
                    log.warning("etcd lease of %s expired; registering again", self.key)
                    await self.register()
            except Unavailable as exc:
                log.warning("etcd keep-alive of %s failed: %s", self.key, exc)

    async def start(self) -> None:
        await self.register()
        self._task = asyncio.get_running_loop().create_task(self._keepalive())

    async def stop(self) -> None:
        """Stop the keep-alive and revoke the lease (which deletes the key)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            await self.etcd.revoke(self.lease)
        except Unavailable as exc:
            log.warning("could not revoke the lease of %s: %s", self.key, exc)
        await self.etcd.aclose()

    async def __aenter__(self) -> EtcdRegistration:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
