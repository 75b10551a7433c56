"""Details of Consul's HTTP API that real clients depend on, checked against a real agent."""

from __future__ import annotations

import concurrent.futures
import subprocess
import time
from pathlib import Path

import httpx

from tests.integration.procs import AgentProcess

FIXTURES = Path(__file__).parent / "fixtures"


def put(agent: AgentProcess, path: str, body: object = None, **params: str) -> httpx.Response:
    return httpx.put(agent.url + path, json=body, params=params)


def test_curl_register_with_tags_and_http_check(agent: AgentProcess) -> None:
    """`curl -X PUT --data @service.json` registers a service with tags, meta, weights and an HTTP check."""
    out = subprocess.run(
        [
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "PUT",
            "--data",
            f"@{FIXTURES / 'service.json'}",
            agent.url + "/v1/agent/service/register",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout == "200"
    svc = httpx.get(agent.url + "/v1/agent/service/web-1").json()
    assert svc["Service"] == "web"
    assert svc["Tags"] == ["primary", "v1"]
    assert svc["Meta"] == {"version": "1.0"}
    assert svc["Weights"] == {"Passing": 10, "Warning": 1}
    checks = httpx.get(agent.url + "/v1/agent/checks").json()
    check = checks["service:web-1"]
    assert check["Name"] == "web http"
    assert check["Type"] == "http"
    assert check["Interval"] == "10s"
    assert check["Definition"]["HTTP"] == "http://127.0.0.1:8080/health"
    catalog = httpx.get(agent.url + "/v1/catalog/service/web", params={"tag": "primary"}).json()
    assert [c["ServiceID"] for c in catalog] == ["web-1"]
    assert catalog[0]["ServiceTags"] == ["primary", "v1"]
    assert catalog[0]["Datacenter"] == "dc1"


def test_writes_answer_exactly_200(agent: AgentProcess) -> None:
    """Every successful write answers 200 (py-consul treats 204 as failure)."""
    assert put(agent, "/v1/agent/service/register", {"Name": "a", "Port": 1}).status_code == 200
    assert (
        put(agent, "/v1/agent/check/register", {"Name": "c1", "TTL": "10s", "ServiceID": "a"}).status_code
        == 200
    )
    assert put(agent, "/v1/agent/check/pass/c1").status_code == 200
    assert put(agent, "/v1/agent/service/maintenance/a", enable="true", reason="upgrade").status_code == 200
    assert put(agent, "/v1/agent/service/maintenance/a", enable="false").status_code == 200
    assert put(agent, "/v1/agent/check/deregister/c1").status_code == 200
    assert put(agent, "/v1/agent/service/deregister/a").status_code == 200


def test_reads_carry_index_and_json_type(agent: AgentProcess) -> None:
    """Catalog and health reads carry X-Consul-Index >= 1 and a JSON type, even for an unknown service."""
    for path in [
        "/v1/catalog/services",
        "/v1/catalog/service/nothing",
        "/v1/health/service/nothing",
        "/v1/health/checks/nothing",
        "/v1/health/state/any",
        "/v1/agent/services",
    ]:
        r = httpx.get(agent.url + path)
        assert r.status_code == 200, path
        assert int(r.headers["x-consul-index"]) >= 1, path
        assert r.headers["content-type"] == "application/json", path
        assert r.headers["x-consul-knownleader"] == "true"
        assert "x-consul-lastcontact" in r.headers
    assert httpx.get(agent.url + "/v1/health/service/nothing").json() == []


def test_config_file_form_and_snake_case(agent: AgentProcess) -> None:
    """The config-file form {"service": {...}} with lower/snake-case keys registers like CamelCase."""
    body = {
        "service": {
            "name": "cfg",
            "id": "cfg-1",
            "port": 7000,
            "tags": ["x"],
            "tagged_addresses": {"lan": {"address": "127.0.0.2", "port": 7001}},
            "checks": [{"ttl": "5s", "deregister_critical_service_after": "1m"}],
        }
    }
    assert put(agent, "/v1/agent/service/register", body).status_code == 200
    svc = httpx.get(agent.url + "/v1/agent/service/cfg-1").json()
    assert svc["Port"] == 7000
    assert svc["TaggedAddresses"]["lan"] == {"Address": "127.0.0.2", "Port": 7001}
    checks = httpx.get(agent.url + "/v1/agent/checks").json()
    assert checks["service:cfg-1"]["Definition"]["DeregisterCriticalServiceAfter"] == "1m0s"


def test_percent_decoded_path_segments(agent: AgentProcess) -> None:
    """Check and service IDs in paths are percent-decoded (service%3Aweb-1 is service:web-1)."""
    put(
        agent,
        "/v1/agent/service/register",
        {"Name": "web", "ID": "web/1", "Port": 80, "Check": {"TTL": "9s"}},
    )
    assert httpx.put(agent.url + "/v1/agent/check/pass/service%3Aweb%2F1").status_code == 200
    assert httpx.get(agent.url + "/v1/agent/service/web%2F1").json()["ID"] == "web/1"
    assert httpx.put(agent.url + "/v1/agent/service/deregister/web%2F1").status_code == 200


def test_passing_variants_exclude_warning(agent: AgentProcess) -> None:
    """?passing, ?passing=1 and ?passing=true return only instances whose checks all pass."""
    for n, status in enumerate(["pass", "warn", "fail"]):
        put(
            agent,
            "/v1/agent/service/register",
            {"Name": "svc", "ID": f"svc-{n}", "Port": 100 + n, "Check": {"TTL": "30s"}},
        )
        assert put(agent, f"/v1/agent/check/{status}/service:svc-{n}").status_code == 200
    for query in ["passing", "passing=1", "passing=true"]:
        got = httpx.get(f"{agent.url}/v1/health/service/svc?{query}").json()
        assert [e["Service"]["ID"] for e in got] == ["svc-0"], query
    everything = httpx.get(f"{agent.url}/v1/health/service/svc?passing=false").json()
    assert len(everything) == 3
    critical = httpx.get(f"{agent.url}/v1/health/state/critical").json()
    assert [c["CheckID"] for c in critical] == ["service:svc-2"]


def test_maintenance_is_a_critical_check(agent: AgentProcess) -> None:
    """Service maintenance shows as a critical _service_maintenance:<id> check and leaves ?passing."""
    put(agent, "/v1/agent/service/register", {"Name": "m", "ID": "m1", "Port": 1})
    assert len(httpx.get(agent.url + "/v1/health/service/m?passing").json()) == 1
    put(agent, "/v1/agent/service/maintenance/m1", enable="true", reason="deploying")
    entry = httpx.get(agent.url + "/v1/health/service/m").json()[0]
    maint = [c for c in entry["Checks"] if c["CheckID"] == "_service_maintenance:m1"]
    assert maint and maint[0]["Status"] == "critical" and maint[0]["Notes"] == "deploying"
    assert httpx.get(agent.url + "/v1/health/service/m?passing").json() == []


def test_self_leader_and_replace_existing_checks(agent: AgentProcess) -> None:
    """agent/self names the datacenter; replace-existing-checks drops checks missing from the new one."""
    me = httpx.get(agent.url + "/v1/agent/self").json()
    assert me["Config"]["Datacenter"] == "dc1"
    assert httpx.get(agent.url + "/v1/status/leader").json()
    body = {"Name": "r", "ID": "r1", "Checks": [{"CheckID": "a", "TTL": "5s"}, {"CheckID": "b", "TTL": "5s"}]}
    put(agent, "/v1/agent/service/register", body)
    put(
        agent,
        "/v1/agent/service/register",
        {"Name": "r", "ID": "r1", "Checks": [{"CheckID": "a", "TTL": "5s"}]},
        **{"replace-existing-checks": "true"},
    )
    assert set(httpx.get(agent.url + "/v1/agent/checks").json()) == {"a"}


def test_filter_expressions(agent: AgentProcess) -> None:
    """?filter= narrows list answers with Consul's expression language, blocking queries included."""
    for n, version in enumerate(["1", "2", "2"]):
        body = {"Name": "f", "ID": f"f-{n}", "Port": 100 + n, "Tags": [f"t{n}"], "Meta": {"version": version}}
        put(agent, "/v1/agent/service/register", body)

    def get(path: str, expression: str, **params: str) -> httpx.Response:
        r = httpx.get(agent.url + path, params={"filter": expression, **params}, timeout=10)
        assert r.status_code == 200, r.text
        return r

    got = get("/v1/health/service/f", 'Service.Meta.version == "2" and "t2" not in Service.Tags').json()
    assert [e["Service"]["ID"] for e in got] == ["f-1"]
    got = get("/v1/catalog/service/f", "ServicePort != 101").json()
    assert sorted(e["ServiceID"] for e in got) == ["f-0", "f-2"]
    assert list(get("/v1/agent/services", '"t0" in Tags').json()) == ["f-0"]
    assert get("/v1/catalog/services", 'ServiceMeta.version == "2"').json() == {"f": ["t1", "t2"]}
    assert get("/v1/health/checks/f", "Status == passing").json() == []  # no checks registered
    # A blocking query with a filter wakes on the service's change and answers filtered.
    index = get("/v1/health/service/f", "Service.Meta.version == 3").headers["x-consul-index"]
    assert get("/v1/health/service/f", "Service.Meta.version == 3").json() == []
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(
            get, "/v1/health/service/f", "Service.Meta.version == 3", index=index, wait="10s"
        )
        time.sleep(0.3)
        assert not waiting.done()
        put(agent, "/v1/agent/service/register", {"Name": "f", "ID": "f-3", "Meta": {"version": "3"}})
        assert [e["Service"]["ID"] for e in waiting.result(timeout=10).json()] == ["f-3"]
