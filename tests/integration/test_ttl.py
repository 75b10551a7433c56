"""TTL checks expire to critical, and DeregisterCriticalServiceAfter removes the service."""

from __future__ import annotations

import time

import httpx

from tests.integration.procs import AgentProcess, wait_for


def test_ttl_expires_to_critical(agent: AgentProcess) -> None:
    """A passing TTL check not refreshed within its TTL turns critical, and a heartbeat brings it back."""
    httpx.put(
        agent.url + "/v1/agent/service/register", json={"Name": "hb", "ID": "hb1", "Check": {"TTL": "1s"}}
    )
    httpx.put(agent.url + "/v1/agent/check/pass/service:hb1")
    assert len(httpx.get(agent.url + "/v1/health/service/hb?passing").json()) == 1
    start = time.monotonic()
    wait_for(
        lambda: httpx.get(agent.url + "/v1/health/service/hb?passing").json() == [],
        timeout=5,
        what="TTL expiry",
    )
    assert time.monotonic() - start >= 0.7
    check = httpx.get(agent.url + "/v1/agent/checks").json()["service:hb1"]
    assert check["Status"] == "critical"
    assert "TTL expired" in check["Output"]
    httpx.put(agent.url + "/v1/agent/check/update/service:hb1", json={"Status": "passing", "Output": "back"})
    assert len(httpx.get(agent.url + "/v1/health/service/hb?passing").json()) == 1


def test_heartbeats_keep_it_passing(agent: AgentProcess) -> None:
    """Heartbeats faster than the TTL keep the check passing past several TTLs."""
    httpx.put(
        agent.url + "/v1/agent/service/register", json={"Name": "hb", "ID": "hb2", "Check": {"TTL": "1s"}}
    )
    for _ in range(8):
        httpx.put(agent.url + "/v1/agent/check/pass/service:hb2")
        time.sleep(0.3)
        assert httpx.get(agent.url + "/v1/agent/checks").json()["service:hb2"]["Status"] == "passing"


def test_deregister_critical_service_after(agent: AgentProcess) -> None:
    """A service whose check stays critical longer than DeregisterCriticalServiceAfter is removed."""
    body = {"Name": "gone", "ID": "g1", "Check": {"TTL": "500ms", "DeregisterCriticalServiceAfter": "1s"}}
    httpx.put(agent.url + "/v1/agent/service/register", json=body)
    httpx.put(agent.url + "/v1/agent/service/register", json={"Name": "stay", "ID": "s1"})
    wait_for(
        lambda: "g1" not in httpx.get(agent.url + "/v1/agent/services").json(),
        timeout=10,
        what="deregistration",
    )
    assert "s1" in httpx.get(agent.url + "/v1/agent/services").json()
    assert "service:g1" not in httpx.get(agent.url + "/v1/agent/checks").json()
