"""A real agent's HTTP API under random JSON bodies and query strings: never a 5xx, never a crash,
and a refused write stores nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.procs import AgentProcess

KEEP = {"ID": "keep-1", "Name": "keep", "Address": "10.9.9.9", "Port": 9999, "Tags": ["stays"]}

KEYS = [
    "ID", "Name", "Address", "Port", "Tags", "Meta", "Weights", "EnableTagOverride", "Check", "Checks",
    "TaggedAddresses", "Kind", "id", "name", "port", "tags", "check", "checks", "CheckID", "TTL",
    "HTTP", "TCP", "GRPC", "Interval", "Timeout", "DeregisterCriticalServiceAfter", "Status",
    "ServiceID", "Header", "Method", "Body", "SuccessBeforePassing", "FailuresBeforeCritical",
    "Args", "Passing", "Warning", "service",
]  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=40),
    st.sampled_from(
        ["web", "10s", "-1s", "1e999s", "http://127.0.0.1:1/", "127.0.0.1:1", "passing", "x" * 600]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=6),
    max_leaves=20,
)
bodies = st.dictionaries(st.sampled_from(KEYS), values, max_size=8)
PATHS = [
    "/v1/agent/service/register",
    "/v1/agent/service/register?replace-existing-checks",
    "/v1/agent/check/register",
    "/v1/agent/check/update/service:keep-1",
]


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    proc = AgentProcess(tmp_path_factory.mktemp("apifuzz") / "agent", "--dns-addr", "").start()
    try:
        assert httpx.put(proc.url + "/v1/agent/service/register", json=KEEP).status_code == 200
        yield proc
    finally:
        proc.stop()


def service_id(body: dict[str, Any]) -> str | None:
    inner = body.get("service") if isinstance(body.get("service"), dict) else body
    for key in ("ID", "id", "Name", "name"):  # the ID defaults to the name, as in Consul
        value = inner.get(key)  # type: ignore[union-attr]
        if isinstance(value, str) and value:
            return value
    return None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies, path=st.sampled_from(PATHS))
def test_random_bodies_get_4xx_or_200_and_refusals_store_nothing(
    agent: AgentProcess, body: dict[str, Any], path: str
) -> None:
    sid = service_id(body)
    existed = (
        sid is not None
        and httpx.get(f"{agent.url}/v1/agent/service/{quote(sid, safe='')}").status_code == 200
    )
    r = httpx.put(agent.url + path, content=json.dumps(body), timeout=10)  # json: big ints too
    assert r.status_code < 500, (r.status_code, r.text)
    if r.status_code >= 400:
        assert r.text.strip(), "a refusal says what is wrong"
        if path.startswith("/v1/agent/service/register") and sid is not None and not existed:
            assert httpx.get(f"{agent.url}/v1/agent/service/{quote(sid, safe='')}").status_code == 404, (
                "half-stored"
            )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=300), path=st.sampled_from(PATHS))
def test_random_bytes_are_refused(agent: AgentProcess, raw: bytes, path: str) -> None:
    r = httpx.put(agent.url + path, content=raw, timeout=10)
    assert r.status_code < 500, (r.status_code, r.text)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    endpoint=st.sampled_from(
        [
            "/v1/health/service/keep",
            "/v1/catalog/service/keep",
            "/v1/health/state/any",
            "/v1/catalog/services",
        ]
    ),
    params=st.dictionaries(
        st.sampled_from(["index", "wait", "tag", "passing", "stale", "consistent", "filter", "dc"]),
        st.text(max_size=30),
        max_size=4,
    ),
)
def test_random_query_strings_never_5xx(agent: AgentProcess, endpoint: str, params: dict[str, str]) -> None:
    if params.get("index", "").strip():
        params["wait"] = "10ms"  # a valid index blocks: keep it short
    r = httpx.get(agent.url + endpoint, params=params, timeout=10)
    assert r.status_code < 500, (r.status_code, r.text)


def test_the_kept_service_is_untouched_and_the_agent_alive(agent: AgentProcess) -> None:
    """Runs after the fuzzing above (file order): the first registration is exactly as it was."""
    got = httpx.get(agent.url + "/v1/agent/service/keep-1").json()
    assert {k: got[k] for k in ("ID", "Service", "Address", "Port", "Tags")} == {
        "ID": "keep-1",
        "Service": "keep",
        "Address": "10.9.9.9",
        "Port": 9999,
        "Tags": ["stays"],
    }
    assert agent.proc is not None and agent.proc.poll() is None
