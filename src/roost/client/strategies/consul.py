"""roost or Consul over the Consul-compatible HTTP API, fed by blocking queries.

Only ``GET /v1/health/service/<name>?passing=1&index=N&wait=W`` is used, so the same code follows a
real Consul agent. Each answer carries ``X-Consul-Index``; the next query blocks until the index
moves past it (or ``wait`` ends), so the cache is pushed, not polled. As Consul's docs advise, an
index that goes backwards (the registry restarted) resets to 0, and an index of 0 is treated as 1.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from roost.client.instance import Instance
from roost.client.tls import default_ssl_context
from roost.errors import Unavailable


def _base_url(address: str) -> str:
    address = address.strip().rstrip("/")
    if "://" not in address:
        address = "http://" + address
    return address


class ConsulStrategy:
    """Follow services through a roost or Consul agent.

    Args:
        address: ``host:port`` or a URL of the agent (``ROOST_HTTP_ADDR``/``CONSUL_HTTP_ADDR``).
        token: ACL token sent as ``X-Consul-Token`` (Consul only).
        wait: longest a blocking query is held by the agent, in seconds.
        passing_only: ask for instances whose checks all pass (``?passing``).
        datacenter: ``?dc=`` for Consul.
        connect_timeout: seconds to connect to the agent.

    The blocking queries go through aiohttp rather than httpx (which ServiceClient uses): every
    change wakes every watcher, and side by side on a 2-core machine 100 concurrent queries took
    about 7 ms through aiohttp's C parser against about 46 ms through httpx.
    """

    name = "consul"

    def __init__(
        self,
        address: str = "127.0.0.1:8500",
        *,
        token: str = "",
        wait: float = 30.0,
        passing_only: bool = True,
        datacenter: str = "",
        connect_timeout: float = 2.0,
    ) -> None:
        self.base_url = _base_url(address)
        self.wait = wait
        self.passing_only = passing_only
        self.datacenter = datacenter
        self._headers = {"X-Consul-Token": token} if token else {}
        # The read timeout must outlast the blocking query (Consul adds up to wait/16 of jitter).
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=wait * 1.1 + 5
        )
        self._pool: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        # Created on first use, inside the event loop that will use it (aiohttp's rule).
        if self._pool is None or self._pool.closed:
            self._pool = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, ssl=default_ssl_context()),
                headers=self._headers,
                timeout=self._timeout,
            )
        return self._pool

    async def query(self, service: str, index: int = 0) -> tuple[int, tuple[Instance, ...]]:
        """One (blocking when ``index`` > 0) health query: ``(new index, instances)``."""
        params: dict[str, str] = {}
        if self.passing_only:
            params["passing"] = "1"
        if self.datacenter:
            params["dc"] = self.datacenter
        if index > 0:
            params["index"] = str(index)
            params["wait"] = f"{self.wait:g}s"
        url = f"{self.base_url}/v1/health/service/{quote(service, safe='')}"
        try:
            async with self._http().get(url, params=params) as resp:
                body = await resp.read()
                status, header = resp.status, resp.headers.get("X-Consul-Index", "0")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unavailable(f"agent at {self.base_url} did not answer: {exc!r}") from exc
        if status != 200:
            raise Unavailable(f"agent at {self.base_url} answered {status}: {body[:200]!r}")
        try:
            new_index = int(header)
        except ValueError:
            new_index = 0
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise Unavailable(f"agent at {self.base_url} sent invalid JSON: {exc}") from exc
        return new_index, parse_health(service, data)

    async def updates(self, service: str) -> AsyncIterator[tuple[Instance, ...]]:
        index = 0
        last: tuple[Instance, ...] | None = None
        while True:
            new_index, instances = await self.query(service, index)
            if new_index < index:
                new_index = 0  # the registry restarted or its index was reset
            index = max(new_index, 1)
            if instances != last:
                last = instances
                yield instances
                # Let every other cache woken by the same change take its answer before this one
                # sends its next query: the next query cannot miss a change (it carries the index).
                await asyncio.sleep(0)

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.close()


def parse_health(service: str, body: Any) -> tuple[Instance, ...]:
    """Consul's ``/v1/health/service`` JSON -> instances, sorted by ID for stable comparisons."""
    out = []
    for entry in body or ():
        svc = entry.get("Service") or {}
        node = entry.get("Node") or {}
        checks = entry.get("Checks") or ()
        warning = any(c.get("Status") == "warning" for c in checks)
        weights = svc.get("Weights") or {}
        weight = int(weights.get("Warning" if warning else "Passing", 1) or 0)
        meta = svc.get("Meta") or {}
        out.append(
            Instance(
                service=service,
                id=str(svc.get("ID") or f"{svc.get('Address')}:{svc.get('Port')}"),
                address=str(svc.get("Address") or node.get("Address") or ""),
                port=int(svc.get("Port") or 0),
                weight=max(weight, 0),
                tags=tuple(str(t) for t in svc.get("Tags") or ()),
                meta={str(k): str(v) for k, v in meta.items()},
            )
        )
    return tuple(sorted(out, key=lambda i: i.id))
