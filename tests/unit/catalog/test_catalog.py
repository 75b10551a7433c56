import asyncio

import pytest

from roost.catalog.catalog import Catalog
from roost.catalog.waiters import SERVICES, service_topic
from roost.errors import NotFound, ValidationError
from roost.model import CheckDefinition, CheckKind, Service, Status
from roost.store.memory import MemoryStore


async def catalog() -> Catalog:
    c = Catalog(MemoryStore(), node="n1")
    await c.start()
    return c


def ttl(check_id: str, service_id: str) -> CheckDefinition:
    return CheckDefinition(check_id, check_id, CheckKind.TTL, service_id=service_id, ttl=30)


async def test_register_and_read_own_write() -> None:
    """A registration is visible in the state as soon as register() returns, with its checks."""
    c = await catalog()
    index = await c.register(Service(id="w1", name="web", port=80), [ttl("c1", "w1")])
    entries = c.state.instances("web")
    assert [e.service.id for e in entries] == ["w1"]
    assert entries[0].status is Status.CRITICAL
    assert c.state.topics.index(service_topic("web")) == index
    await c.stop()


async def test_index_moves_only_on_status_change() -> None:
    """Setting a check to the status it has keeps the index and only updates the output."""
    c = await catalog()
    await c.register(Service(id="w1", name="web"), [ttl("c1", "w1")])
    assert await c.set_check_status("c1", Status.PASSING, "ok")
    index = c.state.index
    revision = c.state.topics.revision(service_topic("web"))
    assert not await c.set_check_status("c1", Status.PASSING, "still ok")
    assert c.state.index == index
    assert c.state.checks["c1"].output == "still ok"
    assert c.state.topics.revision(service_topic("web")) != revision  # caches see the new output
    await c.stop()


async def test_change_to_a_does_not_wake_b() -> None:
    """A watcher of one service is not woken by a change to another."""
    c = await catalog()
    await c.register(Service(id="a1", name="a"))
    await c.register(Service(id="b1", name="b"))
    index = c.state.topics.index(service_topic("a"))
    waiter = asyncio.create_task(c.state.topics.wait(service_topic("a"), index, 5))
    await c.register(Service(id="b2", name="b"))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await c.register(Service(id="a2", name="a"))
    await asyncio.wait_for(waiter, 1)
    await c.stop()


async def test_rename_and_deregister_remove_old_entries() -> None:
    """Re-registering an ID under a new name moves it; deregistering removes it and its checks."""
    c = await catalog()
    await c.register(Service(id="x", name="old"), [ttl("cx", "x")])
    await c.register(Service(id="x", name="new"))
    assert c.state.instances("old") == []
    assert [e.service.id for e in c.state.instances("new")] == ["x"]
    assert "cx" in c.state.checks  # checks stay unless replace_existing_checks
    await c.deregister("x")
    assert c.state.instances("new") == [] and "cx" not in c.state.checks
    assert "old" not in c.state.service_names() and "new" not in c.state.service_names()
    with pytest.raises(NotFound):
        await c.deregister("x")
    await c.stop()


async def test_invalid_write_stores_nothing() -> None:
    """A registration with an invalid check stores neither the service nor the check."""
    c = await catalog()
    index = c.state.index
    with pytest.raises(ValidationError):
        await c.register(
            Service(id="w", name="web"), [CheckDefinition("c", "c", CheckKind.TTL, service_id="w")]
        )
    assert c.state.index == index and c.state.services == {} and c.state.checks == {}
    await c.stop()


async def test_maintenance_and_tags() -> None:
    """Maintenance adds a critical check; tag filters and the services list follow the instances."""
    c = await catalog()
    await c.register(Service(id="w1", name="web", tags=("a", "b")))
    await c.register(Service(id="w2", name="web", tags=("b",)))
    assert [e.service.id for e in c.state.instances("web", ("a",))] == ["w1"]
    assert c.state.service_names() == {"web": ["a", "b"]}
    await c.set_maintenance("w2", True, "upgrade")
    statuses = {e.service.id: e.status for e in c.state.instances("web")}
    assert statuses == {"w1": Status.PASSING, "w2": Status.CRITICAL}
    await c.set_maintenance("w2", False, "")
    assert all(e.status is Status.PASSING for e in c.state.instances("web"))
    assert c.state.topic_index(SERVICES) >= 1
    await c.stop()
