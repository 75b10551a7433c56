"""Keeps a worker's route table and service pools in step with the catalog. Push, not poll.

* ``GET /v1/catalog/services`` as a blocking query says which services exist;
* for each of them the client library's push-fed :class:`~roost.client.discovery.Discovery` cache
  (over :class:`~roost.client.strategies.consul.ConsulStrategy`, blocking health queries with
  ``?passing``) says which instances are healthy, with their tags and meta;
* every change rebuilds the route table (services that opt in through ``roost-gateway`` tags or meta)
  and the service's pool. No restart, no timer.

When the agent cannot be reached the gateway keeps serving what it knew last.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from urllib.parse import urlsplit

import httpx

from roost.client.discovery import Discovery
from roost.client.instance import Instance
from roost.client.retry import Backoff
from roost.client.strategies.consul import ConsulStrategy
from roost.errors import RoostError
from roost.gateway.state import GatewayState

WAIT = 30.0  # seconds a blocking query is held by the agent


class CatalogFollower:
    def __init__(self, state: GatewayState, agent: str, *, wait: float = WAIT) -> None:
        self.state = state
        base = agent if "://" in agent else "http://" + agent
        self.base = base.rstrip("/")
        if not urlsplit(self.base).netloc:
            raise ValueError(f"bad agent address {agent!r}")
        self.wait = wait
        self.discovery = Discovery(
            ConsulStrategy(self.base, wait=wait), policy="round_robin", max_stale=float("inf"), first_wait=5.0
        )
        self.services: set[str] = set()
        self.instances: dict[str, tuple[Instance, ...]] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.ready = asyncio.Event()
        self._pending: set[str] = set()
        timeout = httpx.Timeout(connect=2.0, read=wait * 1.1 + 5, write=5.0, pool=None)
        self._http = httpx.AsyncClient(base_url=self.base, timeout=timeout)

    async def run(self) -> None:
        index = 0
        backoff = Backoff(0.2, 10.0)
        warned = False
        while True:
            params = {"index": str(index), "wait": f"{self.wait:g}s"} if index else {}
            try:
                resp = await self._http.get("/v1/catalog/services", params=params)
                resp.raise_for_status()
                names = set(resp.json())
                new_index = int(resp.headers.get("x-consul-index", "0") or 0)
            except (httpx.HTTPError, ValueError) as exc:
                if not warned:
                    print(
                        f"roost gateway: agent at {self.base} unreachable ({exc!r}); serving what is known",
                        file=sys.stderr,
                        flush=True,
                    )
                    warned = True
                await asyncio.sleep(backoff.next_delay())
                continue
            if warned:
                print(f"roost gateway: agent at {self.base} is back", file=sys.stderr, flush=True)
                warned = False
            backoff.reset()
            index = 1 if new_index < index else max(new_index, 1)
            self.state.index = index
            self.sync(names)

    def sync(self, names: set[str]) -> None:
        names.discard("consul")
        for gone in self.services - names:
            task = self.tasks.pop(gone, None)
            if task is not None:
                task.cancel()
            self.instances.pop(gone, None)
            self.state.drop_service(gone)
        added = names - self.services
        self.services = names
        self._pending |= added
        for name in added:
            self.tasks[name] = asyncio.get_running_loop().create_task(self.follow(name))
        self.rebuild()
        if not self._pending:
            self.ready.set()

    async def follow(self, name: str) -> None:
        try:
            with contextlib.suppress(RoostError):
                self.apply(name, await self.discovery.discover(name))
            self._pending.discard(name)
            if not self._pending:
                self.ready.set()
            async for _change in self.discovery.watch(name):
                try:
                    got = self.discovery.cached(name)
                except RoostError:
                    continue
                if got is not None:
                    self.apply(name, got)
        finally:
            self._pending.discard(name)

    def apply(self, name: str, instances: list[Instance]) -> None:
        if name not in self.services:
            return
        current = tuple(instances)
        if self.instances.get(name) == current and name in self.state.pools:
            return
        self.instances[name] = current
        self.state.set_service(name, current)
        self.rebuild()

    def rebuild(self) -> None:
        self.state.set_routes(self.services, self.instances)

    async def aclose(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        await self._http.aclose()
        await self.discovery.aclose()
