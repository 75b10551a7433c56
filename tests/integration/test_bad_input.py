"""Bad input gets a clear 4xx and stores nothing."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.integration.procs import AgentProcess

REGISTER = "/v1/agent/service/register"


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"", 400, "empty"),
        (b"[1, 2]", 400, "JSON object"),
        (b'{"Port": 80}', 400, "Name is required"),
        (b'{"Name": "web", "Port": 70000}', 400, "between 1 and 65535"),
        (b'{"Name": "web", "Port": -1}', 400, "between 1 and 65535"),
        (b'{"Name": "web", "Port": "eighty"}', 400, "Port must be an integer"),
        (b'{"Name": "web", "Tags": "a,b"}', 400, "list of strings"),
        (b'{"Name": "web_bad name"}', 400, "DNS label"),
        (b'{"Name": "web", "Meta": {"k": 1}}', 400, "string values"),
        (b'{"Name": "web", "Check": {"Interval": "10s"}}', 400, "needs one of TTL"),
        (b'{"Name": "web", "Check": {"TTL": "soon"}}', 400, "not a duration"),
        (b'{"Name": "web", "Check": {"HTTP": "ftp://x", "Interval": "1s"}}', 400, "http:// or https://"),
        (
            b'{"Name": "web", "Check": {"TTL": "5s", "HTTP": "http://x/", "Interval": "1s"}}',
            400,
            "more than one",
        ),
        (
            b'{"Name": "web", "Tags": [' + b",".join([b'"t%d"' % i for i in range(100)]) + b"]}",
            400,
            "64 tags",
        ),
    ],
)
def test_bad_registration_is_rejected(agent: AgentProcess, body: bytes, status: int, words: str) -> None:
    """Each malformed registration answers a 4xx whose message says what is wrong, and stores nothing."""
    r = httpx.put(agent.url + REGISTER, content=body)
    assert r.status_code == status, r.text
    assert words in r.text
    assert httpx.get(agent.url + "/v1/agent/services").json() == {}


def test_oversized_body_is_413(agent: AgentProcess) -> None:
    """A body over 1 MiB is refused with 413 and nothing is stored."""
    body = b'{"Name": "web", "Meta": {"k": "' + b"x" * (1024 * 1024 + 10) + b'"}}'
    r = httpx.put(agent.url + REGISTER, content=body)
    assert r.status_code == 413
    assert "larger than" in r.text
    assert httpx.get(agent.url + "/v1/agent/services").json() == {}


def test_unknown_ids_are_404(agent: AgentProcess) -> None:
    """Unknown service and check IDs answer 404 with the ID in the message."""
    for method, path in [
        ("PUT", "/v1/agent/service/deregister/ghost"),
        ("GET", "/v1/agent/service/ghost"),
        ("PUT", "/v1/agent/check/pass/ghost"),
        ("PUT", "/v1/agent/check/deregister/ghost"),
        ("PUT", "/v1/agent/service/maintenance/ghost?enable=true"),
    ]:
        r = httpx.request(method, agent.url + path)
        assert r.status_code == 404, path
        assert "ghost" in r.text


def test_bad_query_parameters_are_400(agent: AgentProcess) -> None:
    """wait=abc, index=-1, passing=maybe and an unknown health state are 400s naming the parameter."""
    for query, words in [
        ("wait=abc&index=1", "wait"),
        ("index=-1", "index"),
        ("index=x", "index"),
        ("index=18446744073709551616", "index"),  # 2**64: no longer a Consul index
        ("passing=maybe", "passing"),
        ("filter=Service.Port%20%3D%2080", "filter"),  # "=" is not an operator
    ]:
        r = httpx.get(f"{agent.url}/v1/health/service/web?{query}")
        assert r.status_code == 400, query
        assert words in r.text
    assert httpx.get(agent.url + "/v1/health/state/sleepy").status_code == 400
    # A bad filter on a blocking query is refused at once, not after the wait.
    index = httpx.get(f"{agent.url}/v1/health/service/web").headers["x-consul-index"]
    started = time.monotonic()
    r = httpx.get(
        f"{agent.url}/v1/health/service/web",
        params={"index": index, "wait": "10s", "filter": "Service.ID = web"},
        timeout=20,
    )
    assert r.status_code == 400 and "filter" in r.text
    assert time.monotonic() - started < 5


def test_wrong_method_and_path(agent: AgentProcess) -> None:
    """A wrong method is 405 and an unknown endpoint 404; the agent keeps serving."""
    assert httpx.get(agent.url + REGISTER).status_code == 405
    assert httpx.get(agent.url + "/v1/nothing/here").status_code == 404
    assert httpx.get(agent.url + "/v1/status/leader").status_code == 200


def test_check_for_unknown_service_is_rejected(agent: AgentProcess) -> None:
    """A check registered for a service that does not exist is refused and not stored."""
    r = httpx.put(
        agent.url + "/v1/agent/check/register", json={"Name": "c", "TTL": "5s", "ServiceID": "none"}
    )
    assert r.status_code == 404
    assert "none" in r.text
    assert httpx.get(agent.url + "/v1/agent/checks").json() == {}


def test_ttl_update_on_non_ttl_check_is_400(agent: AgentProcess) -> None:
    """TTL updates are only for TTL checks; check/update validates its Status."""
    httpx.put(agent.url + REGISTER, json={"Name": "w", "Check": {"TCP": "127.0.0.1:1", "Interval": "30s"}})
    assert httpx.put(agent.url + "/v1/agent/check/pass/service:w").status_code == 400
    httpx.put(agent.url + REGISTER, json={"Name": "t", "Check": {"TTL": "30s"}})
    r = httpx.put(agent.url + "/v1/agent/check/update/service:t", json={"Status": "great"})
    assert r.status_code == 400
    assert "Status" in r.text
