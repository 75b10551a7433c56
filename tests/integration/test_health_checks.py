"""Active checks in a real agent: HTTP (real backends), TCP, gRPC, script, CIDR guard, flapping."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from concurrent import futures

import httpx
import pytest

from tests.integration.health_apps import spawn, stop
from tests.integration.procs import AgentProcess, free_port, wait_for


def passing_ids(agent: AgentProcess, name: str) -> list[str]:
    entries = httpx.get(f"{agent.url}/v1/health/service/{name}?passing").json()
    return [e["Service"]["ID"] for e in entries]


def check(agent: AgentProcess, check_id: str) -> dict[str, object]:
    result: dict[str, object] = httpx.get(agent.url + "/v1/agent/checks").json()[check_id]
    return result


def register(agent: AgentProcess, body: dict[str, object]) -> httpx.Response:
    return httpx.put(agent.url + "/v1/agent/service/register", json=body)


@pytest.fixture
def backend() -> Iterator[Callable[[], tuple[int, object]]]:
    """Start real HTTP backend processes; each is killed at the end of the test."""
    procs = []

    def start() -> tuple[int, object]:
        port = free_port()
        proc = spawn("backend.py", port=port)
        procs.append(proc)
        return port, proc

    yield start
    for proc in procs:
        stop(proc)  # type: ignore[arg-type]


def set_code(port: int, code: str) -> None:
    httpx.put(f"http://127.0.0.1:{port}/set?code={code}").raise_for_status()


def probes_seen(port: int) -> dict[str, int]:
    seen: dict[str, int] = httpx.get(f"http://127.0.0.1:{port}/stats").json()
    return seen


def test_http_check_follows_backend(agent: AgentProcess, backend: Callable[[], tuple[int, object]]) -> None:
    """A backend turning 503 leaves ?passing within Interval + Timeout; back at 200 it returns only
    after SuccessBeforePassing probes."""
    ports = [backend()[0] for _ in range(2)]
    for i, port in enumerate(ports):
        check_def = {"HTTP": f"http://127.0.0.1:{port}/health", "Interval": "1s", "Timeout": "500ms"}
        check_def["SuccessBeforePassing"] = 2  # type: ignore[assignment]
        assert (
            register(agent, {"Name": "web", "ID": f"web{i}", "Port": port, "Check": check_def}).status_code
            == 200
        )
    # The first probe runs right after registration, not one interval later.
    wait_for(lambda: sorted(passing_ids(agent, "web")) == ["web0", "web1"], timeout=3, what="both passing")

    set_code(ports[0], "503")
    start = time.monotonic()
    wait_for(lambda: passing_ids(agent, "web") == ["web1"], timeout=10, what="web0 leaving ?passing")
    assert time.monotonic() - start < 1.0 + 0.5 + 1.5  # Interval + Timeout, and a margin for a busy machine
    out = check(agent, "service:web0")
    assert out["Status"] == "critical" and "503" in str(out["Output"])

    set_code(ports[0], "200")
    wait_for(lambda: probes_seen(ports[0]).get("200", 0) >= 1, timeout=5, what="a first good probe")
    time.sleep(0.3)
    if probes_seen(ports[0]).get("200", 0) == 1:  # one good probe so far: not enough
        assert passing_ids(agent, "web") == ["web1"]
    wait_for(lambda: sorted(passing_ids(agent, "web")) == ["web0", "web1"], timeout=6, what="web0 back")
    assert probes_seen(ports[0]).get("200", 0) >= 2


def test_killed_backend_goes_critical_then_deregistered(
    agent: AgentProcess, backend: Callable[[], tuple[int, object]]
) -> None:
    """A killed backend turns critical (connection refused) and DeregisterCriticalServiceAfter removes it."""
    port, proc = backend()
    body = {
        "Name": "api",
        "ID": "api0",
        "Port": port,
        "Check": {
            "HTTP": f"http://127.0.0.1:{port}/health",
            "Interval": "500ms",
            "DeregisterCriticalServiceAfter": "2s",
        },
    }
    assert register(agent, body).status_code == 200
    wait_for(lambda: passing_ids(agent, "api") == ["api0"], timeout=3, what="passing")
    stop(proc)  # type: ignore[arg-type]
    wait_for(lambda: check(agent, "service:api0")["Status"] == "critical", timeout=3, what="critical")
    assert "connection refused" in str(check(agent, "service:api0")["Output"])
    start = time.monotonic()
    wait_for(
        lambda: "api0" not in httpx.get(agent.url + "/v1/agent/services").json(),
        timeout=8,
        what="deregistration",
    )
    assert time.monotonic() - start >= 1.0


def test_http_check_method_header_body(
    agent: AgentProcess, backend: Callable[[], tuple[int, object]]
) -> None:
    """Method, Header and Body are sent; a 429 answer is a warning."""
    port, _ = backend()
    set_code(port, "429")
    body = {
        "Name": "m",
        "ID": "m0",
        "Check": {
            "HTTP": f"http://127.0.0.1:{port}/health",
            "Method": "GET",
            "Header": {"X-Probe": ["roost"]},
            "Interval": "1s",
        },
    }
    assert register(agent, body).status_code == 200
    wait_for(lambda: check(agent, "service:m0")["Status"] == "warning", timeout=3, what="warning")
    assert str(check(agent, "service:m0")["Output"]).startswith(
        f"HTTP GET http://127.0.0.1:{port}/health: 429"
    )


def test_http_check_follows_redirects(agent: AgentProcess, backend: Callable[[], tuple[int, object]]) -> None:
    """A redirect is followed (as Consul does) and the target's answer decides the status."""
    port, _ = backend()
    check_def = {"HTTP": f"http://127.0.0.1:{port}/redirect", "Interval": "1s"}
    assert register(agent, {"Name": "r", "ID": "r0", "Check": check_def}).status_code == 200
    wait_for(lambda: check(agent, "service:r0")["Status"] == "passing", timeout=3, what="passing")
    assert "redirected to" in str(check(agent, "service:r0")["Output"])
    set_code(port, "503")
    wait_for(lambda: check(agent, "service:r0")["Status"] == "critical", timeout=4, what="critical")


def test_tcp_check(agent: AgentProcess) -> None:
    """A TCP check passes against a listening port and is critical against a closed one."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    open_port = listener.getsockname()[1]
    closed_port = free_port()
    try:
        register(
            agent, {"Name": "db", "ID": "db-up", "Check": {"TCP": f"127.0.0.1:{open_port}", "Interval": "1s"}}
        )
        register(
            agent,
            {"Name": "db", "ID": "db-down", "Check": {"TCP": f"127.0.0.1:{closed_port}", "Interval": "1s"}},
        )
        wait_for(lambda: check(agent, "service:db-up")["Status"] == "passing", timeout=3, what="tcp passing")
        wait_for(
            lambda: "refused" in str(check(agent, "service:db-down")["Output"]), timeout=3, what="refused"
        )
        assert check(agent, "service:db-down")["Status"] == "critical"
        assert passing_ids(agent, "db") == ["db-up"]
    finally:
        listener.close()


@pytest.mark.parametrize("flags", [(), ("--check-allow-cidr", "127.0.0.0/8")], ids=["open", "cidr"])
def test_grpc_check(start_agent: Callable[..., AgentProcess], flags: tuple[str, ...]) -> None:
    """A gRPC check calls grpc.health.v1.Health/Check on a real grpcio server, with the service name;
    with --check-allow-cidr it dials the address the policy approved."""
    agent = start_agent(*flags)
    grpc = pytest.importorskip("grpc")
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    servicer.set("shop.Orders", health_pb2.HealthCheckResponse.SERVING)
    servicer.set("shop.Billing", health_pb2.HealthCheckResponse.NOT_SERVING)
    server.start()
    try:
        for svc, sid in (("shop.Orders", "g-orders"), ("shop.Billing", "g-billing")):
            register(
                agent,
                {
                    "Name": "grpc",
                    "ID": sid,
                    "Check": {"GRPC": f"127.0.0.1:{port}/{svc}", "Interval": "500ms"},
                },
            )
        wait_for(lambda: passing_ids(agent, "grpc") == ["g-orders"], timeout=5, what="orders passing")
        wait_for(
            lambda: "NOT_SERVING" in str(check(agent, "service:g-billing")["Output"]),
            timeout=3,
            what="billing NOT_SERVING",
        )
        servicer.set("shop.Orders", health_pb2.HealthCheckResponse.NOT_SERVING)
        wait_for(lambda: passing_ids(agent, "grpc") == [], timeout=3, what="orders critical")
    finally:
        server.stop(None)


def test_cidr_guard(start_agent: Callable[..., AgentProcess]) -> None:
    """With --check-allow-cidr, a check aimed outside is refused with 400; a name resolving outside
    is never probed and shows why."""
    agent = start_agent("--check-allow-cidr", "10.0.0.0/8")
    resp = register(
        agent, {"Name": "x", "ID": "x0", "Check": {"HTTP": "http://127.0.0.1:1/", "Interval": "1s"}}
    )
    assert resp.status_code == 400
    assert "outside the networks" in resp.text
    resp = httpx.put(
        agent.url + "/v1/agent/check/register", json={"Name": "t", "TCP": "127.0.0.1:22", "Interval": "1s"}
    )
    assert resp.status_code == 400
    resp = register(
        agent, {"Name": "y", "ID": "y0", "Check": {"HTTP": "http://localhost:1/", "Interval": "1s"}}
    )
    assert resp.status_code == 200
    wait_for(
        lambda: "not probed" in str(check(agent, "service:y0")["Output"]), timeout=3, what="refused probe"
    )
    assert check(agent, "service:y0")["Status"] == "critical"


def test_script_checks_are_opt_in(start_agent: Callable[..., AgentProcess]) -> None:
    """Script checks are refused by default; with --enable-script-checks exit 0 passes, 1 warns."""
    plain = start_agent()
    resp = register(plain, {"Name": "s", "ID": "s0", "Check": {"Args": ["true"], "Interval": "1s"}})
    assert resp.status_code == 400 and "enable-script-checks" in resp.text
    scripted = start_agent("--enable-script-checks")
    register(
        scripted, {"Name": "s", "ID": "ok", "Check": {"Args": ["sh", "-c", "echo fine"], "Interval": "1s"}}
    )
    register(
        scripted, {"Name": "s", "ID": "meh", "Check": {"Args": ["sh", "-c", "exit 1"], "Interval": "1s"}}
    )
    wait_for(lambda: check(scripted, "service:ok")["Status"] == "passing", timeout=3, what="script passing")
    assert "fine" in str(check(scripted, "service:ok")["Output"])
    wait_for(lambda: check(scripted, "service:meh")["Status"] == "warning", timeout=3, what="script warning")


def test_flapping_check_is_held(
    start_agent: Callable[..., AgentProcess], backend: Callable[[], tuple[int, object]]
) -> None:
    """A check flipping on every probe is marked flapping, holds one status, and stops moving the index."""
    agent = start_agent("--flap-threshold", "2", "--flap-window", "30")
    port, _ = backend()
    register(
        agent,
        {
            "Name": "flaky",
            "ID": "f0",
            "Check": {"HTTP": f"http://127.0.0.1:{port}/health", "Interval": "200ms"},
        },
    )
    wait_for(lambda: passing_ids(agent, "flaky") == ["f0"], timeout=3, what="passing")
    set_code(port, "alternate")
    wait_for(lambda: check(agent, "service:f0").get("Flapping") is True, timeout=6, what="flapping")
    out = check(agent, "service:f0")
    assert str(out["Output"]).startswith("[flapping: holding")
    index = httpx.get(agent.url + "/v1/health/service/flaky").headers["X-Consul-Index"]
    time.sleep(1.5)  # about seven more flips
    assert httpx.get(agent.url + "/v1/health/service/flaky").headers["X-Consul-Index"] == index
    assert check(agent, "service:f0")["Status"] == out["Status"]
