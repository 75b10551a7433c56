"""roost.client's etcd strategy against a real etcd started by the test."""

from __future__ import annotations

import asyncio
import json
import time

from roost.client import Discovery, EtcdRegistration, EtcdStrategy
from tests.integration.etcd_cluster import EtcdCluster, etcd1, etcdctl  # noqa: F401


async def wait_until(discovery: Discovery, name: str, want: set[str], timeout: float = 10.0) -> float:
    t0 = time.monotonic()
    while {i.id for i in await discovery.discover(name)} != want:
        assert time.monotonic() - t0 < timeout, f"{name} never became {want}"
        await asyncio.sleep(0.02)
    return time.monotonic() - t0


async def test_instance_put_with_a_lease_is_found_and_goes_when_the_lease_expires(
    etcd1: EtcdCluster,  # noqa: F811
) -> None:
    """An instance etcdctl puts under /services/<name>/<id> with a 2 s lease is discovered through the
    watch, with its extra fields as meta, and disappears when the lease expires."""
    async with Discovery(EtcdStrategy(etcd1.endpoints)) as d:
        assert await d.discover("orders") == []
        lease = etcdctl(etcd1, "lease", "grant", "2").split()[1]
        record = json.dumps({"host": "127.0.0.1", "port": 9100, "zone": "a", "weight": 3})
        etcdctl(etcd1, "put", "--lease", lease, "/services/orders/o-1", record)
        assert await wait_until(d, "orders", {"o-1"}) < 2.0
        (inst,) = await d.discover("orders")
        assert (inst.address, inst.port, inst.weight, dict(inst.meta)) == (
            "127.0.0.1",
            9100,
            3,
            {"zone": "a"},
        )
        await wait_until(d, "orders", set(), timeout=10)


async def test_registration_keeps_its_lease_alive_and_revokes_it(etcd1: EtcdCluster) -> None:  # noqa: F811
    """EtcdRegistration outlives its lease TTL through keep-alives; leaving removes the key at once."""
    async with Discovery(EtcdStrategy(etcd1.urls)) as d:
        reg = EtcdRegistration(
            "orders", "127.0.0.1", 9200, endpoints=etcd1.endpoints, lease_ttl=2, service_id="me"
        )
        async with reg:
            await wait_until(d, "orders", {"me"})
            await asyncio.sleep(3.0)
            assert [i.id for i in await d.discover("orders")] == ["me"]
        assert await wait_until(d, "orders", set()) < 1.5


async def test_cache_survives_etcd_restart(etcd1: EtcdCluster) -> None:  # noqa: F811
    """With etcd killed the cache keeps serving; after etcd restarts, later writes reach it."""
    etcdctl(etcd1, "put", "/services/orders/a", json.dumps({"host": "127.0.0.1", "port": 1}))
    strategy = EtcdStrategy(etcd1.endpoints, timeout=1.0)
    async with Discovery(strategy, backoff_base=0.05, backoff_cap=0.3) as d:
        await wait_until(d, "orders", {"a"})
        member = etcd1.members[0]
        member.kill()
        await asyncio.sleep(0.5)
        assert [i.id for i in await d.discover("orders")] == ["a"]
        etcd1.restart(member)
        etcdctl(etcd1, "put", "/services/orders/b", json.dumps({"host": "127.0.0.1", "port": 2}))
        await wait_until(d, "orders", {"a", "b"})
