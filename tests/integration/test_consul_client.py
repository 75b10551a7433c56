"""The unmodified py-consul client against a real agent."""

from __future__ import annotations

import threading
import time

import consul
import pytest

from tests.integration.procs import AgentProcess


def client(agent: AgentProcess) -> consul.Consul:
    host, _, port = agent.http_addr.rpartition(":")
    return consul.Consul(host=host, port=int(port))


def test_register_pass_discover_deregister(agent: AgentProcess) -> None:
    """py-consul registers with a TTL check, passes it, finds the instance passing, and deregisters it."""
    c = client(agent)
    assert c.agent.service.register(
        "web", service_id="web-1", address="127.0.0.1", port=8080, tags=["v1"], check=consul.Check.ttl("30s")
    )
    index, nodes = c.health.service("web", passing=True)
    assert nodes == []  # a new TTL check starts critical, as in Consul
    assert int(index) >= 1
    assert c.agent.check.ttl_pass("service:web-1", notes="all good")
    index, nodes = c.health.service("web", passing=True)
    assert [n["Service"]["ID"] for n in nodes] == ["web-1"]
    assert nodes[0]["Service"]["Port"] == 8080
    checks = {ch["CheckID"]: ch for ch in nodes[0]["Checks"]}
    assert checks["service:web-1"]["Status"] == "passing"
    assert checks["service:web-1"]["Output"] == "all good"
    assert "serfHealth" in checks
    _, services = c.catalog.services()
    assert services == {"web": ["v1"]}
    assert c.agent.service.deregister("web-1")
    _, nodes = c.health.service("web")
    assert nodes == []


def test_blocking_health_query_wakes_on_change(agent: AgentProcess) -> None:
    """A blocking health.service(index=, wait=) returns soon after a registration, with a higher index."""
    c = client(agent)
    c.agent.service.register("api", service_id="api-1", port=9000)
    index, _ = c.health.service("api")
    result: dict[str, object] = {}

    def watch() -> None:
        start = time.monotonic()
        new_index, nodes = c.health.service("api", index=index, wait="5s")
        result.update(index=new_index, nodes=nodes, elapsed=time.monotonic() - start)

    t = threading.Thread(target=watch)
    t.start()
    time.sleep(0.3)
    c.agent.service.register("api", service_id="api-2", port=9001)
    t.join(10)
    assert int(str(result["index"])) > int(index)
    assert sorted(n["Service"]["ID"] for n in result["nodes"]) == ["api-1", "api-2"]  # type: ignore[attr-defined]
    assert float(str(result["elapsed"])) < 3


def test_blocking_query_times_out_with_same_index(agent: AgentProcess) -> None:
    """With no change, a blocking query returns after about `wait` with the same index."""
    c = client(agent)
    c.agent.service.register("db", service_id="db-1", port=5432)
    index, _ = c.health.service("db")
    start = time.monotonic()
    new_index, _ = c.health.service("db", index=index, wait="1s")
    elapsed = time.monotonic() - start
    assert new_index == index
    assert 0.9 <= elapsed < 3


def test_unknown_ids_report_failure(agent: AgentProcess) -> None:
    """Deregistering an unknown service or passing an unknown check answers 404, which py-consul reports as
    False, and a bad registration raises."""
    c = client(agent)
    assert c.agent.service.deregister("nope") is False
    assert c.agent.check.ttl_pass("nope") is False
    with pytest.raises(consul.ConsulException):
        c.agent.service.register("bad name!", port=80)
