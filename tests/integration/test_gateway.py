"""`roost gateway` against a real agent and real upstream processes: routing, forwarding, errors, limits."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest
import websockets

from tests.integration.gateway_procs import BackendProcess, GatewayProcess, deregister, register
from tests.integration.procs import AgentProcess, free_port, wait_for

CONFIG = """
[gateway]
retries = 1

[[route]]
name = "canary"
service = "web"
host = "api.example"
path_prefix = "/v2"
methods = ["GET"]
headers = { x-canary = "1" }
tags = ["blue"]
strip_prefix = true

[[route]]
name = "hang"
service = "hang"
path_prefix = "/hang"
strip_prefix = true
connect_timeout = 0.5
retries = 0
"""


@dataclass
class Stack:
    agent: AgentProcess
    a: BackendProcess
    b: BackendProcess
    gateway: GatewayProcess

    @property
    def url(self) -> str:
        return self.gateway.url


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """An agent, backends a (tag blue) and b as service `web`, and a gateway with tight limits."""
    tmp: Path = tmp_path_factory.mktemp("gw")
    agent = AgentProcess(tmp / "agent").start()
    a = BackendProcess("a").start()
    b = BackendProcess("b").start()
    register(agent.url, "web", "web-a", a.port, Tags=["blue"])
    register(agent.url, "web", "web-b", b.port)
    config = tmp / "gateway.toml"
    config.write_text(CONFIG)
    gateway = GatewayProcess(
        agent.url,
        "--config",
        str(config),
        "--header-timeout",
        "1",
        "--body-timeout",
        "2",
        "--read-timeout",
        "1",
        "--max-header-bytes",
        "4096",
        "--max-headers",
        "40",
        "--max-request-line",
        "1024",
    ).start()
    try:
        yield Stack(agent, a, b, gateway)
    finally:
        for proc in (gateway, a, b):
            proc.stop()
        agent.stop()


def raw_request(addr: tuple[str, int], data: bytes, timeout: float = 5.0) -> bytes:
    """Send bytes on a fresh connection and read until the server closes it (or the timeout)."""
    with socket.create_connection(addr, timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            pass
    return b"".join(chunks)


def test_requests_are_balanced_across_instances(stack: Stack) -> None:
    """Round robin spreads GET /web/... over both healthy instances."""
    with httpx.Client(base_url=stack.url) as client:
        seen = Counter(client.get("/web/id").json()["backend"] for _ in range(40))
    assert seen["a"] >= 15 and seen["b"] >= 15, seen


def test_prefix_is_stripped_and_forwarding_headers_are_set(stack: Stack) -> None:
    """The service prefix is removed, hop-by-hop headers dropped, X-Forwarded-* and X-Request-Id added."""
    headers = {
        "Connection": "x-hop",
        "X-Hop": "secret",
        "Keep-Alive": "timeout=5",
        "X-Forwarded-For": "10.0.0.1",
        "X-Other": "kept",
    }
    resp = httpx.get(f"{stack.url}/web/echo?x=1", headers=headers)
    assert resp.status_code == 200
    echo = resp.json()
    assert echo["path"] == "/echo" and echo["query"] == "x=1"
    seen = echo["headers"]
    assert "x-hop" not in seen and "keep-alive" not in seen
    assert seen["x-other"] == "kept"
    assert seen["x-forwarded-for"] == "10.0.0.1, 127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-forwarded-host"] == stack.gateway.addr
    assert seen["x-request-id"] and seen["x-request-id"] == resp.headers["x-request-id"]
    mine = httpx.get(f"{stack.url}/web/echo", headers={"X-Request-Id": "abc-123"}).json()["headers"]
    assert mine["x-request-id"] == "abc-123"


def test_host_header_routes_to_the_service(stack: Stack) -> None:
    """Host `web.roost` reaches service `web` with the path unchanged."""
    resp = httpx.get(f"{stack.url}/echo", headers={"Host": "web.roost"})
    assert resp.status_code == 200 and resp.json()["path"] == "/echo"


def test_explicit_route_matches_host_method_header_and_tag(stack: Stack) -> None:
    """A config-file route matches on host, method and header, and sends only to instances with its tag."""
    hit = {"Host": "api.example", "X-Canary": "1"}
    with httpx.Client(base_url=stack.url) as client:
        backends = {client.get("/v2/id", headers=hit).json()["backend"] for _ in range(10)}
        assert backends == {"a"}
        assert client.get("/v2/id", headers={"Host": "api.example"}).status_code == 404
        assert client.post("/v2/id", headers=hit).status_code == 404


def test_route_from_registry_tags_and_meta_appears_without_restart(stack: Stack) -> None:
    """Registering an instance tagged `roost-gateway=/payments` (or with that meta) adds the route live."""
    assert httpx.get(f"{stack.url}/payments/id").status_code == 404
    register(stack.agent.url, "pay", "pay-1", stack.a.port, Tags=["roost-gateway=/payments"])
    register(stack.agent.url, "shop", "shop-1", stack.b.port, Meta={"roost-gateway": "/store"})
    wait_for(lambda: httpx.get(f"{stack.url}/payments/id").status_code == 200, timeout=10, what="tag route")
    assert httpx.get(f"{stack.url}/payments/id").json()["backend"] == "a"
    wait_for(lambda: httpx.get(f"{stack.url}/store/id").status_code == 200, timeout=10, what="meta route")
    assert httpx.get(f"{stack.url}/store/id").json()["backend"] == "b"
    deregister(stack.agent.url, "pay-1")
    wait_for(lambda: httpx.get(f"{stack.url}/payments/id").status_code == 404, timeout=10, what="route gone")


def test_no_healthy_instance_is_a_503_naming_the_service(stack: Stack) -> None:
    """A service whose only instance fails its check answers 503 with the service in the JSON body."""
    register(stack.agent.url, "empty", "empty-1", stack.a.port, Check={"TTL": "30s"})
    wait_for(lambda: httpx.get(f"{stack.url}/empty/id").status_code == 503, timeout=10, what="503")
    resp = httpx.get(f"{stack.url}/empty/id")
    assert resp.json() == {"error": "no healthy instance", "service": "empty"}


def test_refused_upstream_is_a_502(stack: Stack) -> None:
    """An instance nobody listens on gives 502 once the retries are spent."""
    register(stack.agent.url, "dead", "dead-1", free_port())
    wait_for(lambda: httpx.get(f"{stack.url}/dead/id").status_code != 404, timeout=10, what="route")
    resp = httpx.get(f"{stack.url}/dead/id")
    assert resp.status_code == 502
    assert resp.json()["service"] == "dead"


def test_slow_upstream_is_a_504(stack: Stack) -> None:
    """An upstream silent for longer than the read timeout (1 s) gives 504."""
    started = time.monotonic()
    resp = httpx.get(f"{stack.url}/web/delay/4", timeout=10)
    assert resp.status_code == 504
    assert time.monotonic() - started < 3.5


def test_streamed_responses_and_chunked_uploads_pass(stack: Stack) -> None:
    """A chunked response and a chunked request body arrive whole."""
    resp = httpx.get(f"{stack.url}/web/bytes/3000000")
    assert resp.status_code == 200 and len(resp.content) == 3_000_000

    def body() -> Iterator[bytes]:
        for _ in range(10):
            yield b"y" * 100_000

    up = httpx.post(f"{stack.url}/web/upload", content=body())
    assert up.json()["received"] == 1_000_000


def test_websocket_upgrade_is_passed_through(stack: Stack) -> None:
    """A WebSocket handshake through the gateway turns into a two-way byte pipe to one backend."""

    async def talk() -> list[str | bytes]:
        host, port = stack.gateway.host_port
        async with websockets.connect(f"ws://{host}:{port}/web/ws") as ws:
            await ws.send("hello")
            first = await ws.recv()
            await ws.send(b"\x00\x01\x02")
            second = await ws.recv()
            return [first, second]

    first, second = asyncio.run(talk())
    assert isinstance(first, str) and first.endswith(":hello")
    assert second == b"\x00\x01\x02"


def test_bad_requests_get_4xx_and_others_are_still_served(stack: Stack) -> None:
    """Oversized headers 431, too many headers 431, long target 414, garbage 400; then a GET still works."""
    addr = stack.gateway.host_port
    big = b"GET /web/id HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 6000 + b"\r\n\r\n"
    assert raw_request(addr, big).startswith(b"HTTP/1.1 431")
    many = b"GET /web/id HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(60)) + b"\r\n"
    assert raw_request(addr, many).startswith(b"HTTP/1.1 431")
    long = b"GET /web/" + b"a" * 2000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert raw_request(addr, long).startswith(b"HTTP/1.1 414")
    assert raw_request(addr, b"BLAH BLAH BLAH\r\n\r\n").startswith(b"HTTP/1.1 400")
    assert raw_request(addr, b"GET /web/id HTTP/1.1\r\nHost x\r\n\r\n").startswith(b"HTTP/1.1 400")
    assert httpx.get(f"{stack.url}/web/id").status_code == 200


def test_slow_client_is_cut_off_while_others_are_served(stack: Stack) -> None:
    """A client that never finishes its request head gets 408 after the header timeout (1 s)."""
    addr = stack.gateway.host_port
    with socket.create_connection(addr, timeout=5) as slow:
        slow.sendall(b"GET /web/id HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        assert httpx.get(f"{stack.url}/web/id").status_code == 200
        answer = slow.recv(65536)
        assert time.monotonic() - started < 4
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408")
    assert httpx.get(f"{stack.url}/web/id").status_code == 200


def test_metrics_count_requests_by_route_and_upstream(stack: Stack) -> None:
    """GET /_roost/metrics reports requests, status classes and latency buckets per route and upstream."""
    for _ in range(4):
        httpx.get(f"{stack.url}/web/id")
    text = httpx.get(f"{stack.url}/_roost/metrics").text
    assert 'roost_gateway_route_requests_total{route="web"}' in text
    assert 'roost_gateway_route_responses_total{route="web",class="2xx"}' in text
    assert 'roost_gateway_upstream_duration_seconds_bucket{upstream="web/web-a",le="+Inf"}' in text
    data = httpx.get(f"{stack.url}/_roost/metrics?format=json").json()
    assert data["routes"]["web"]["requests"] >= 4
    assert data["routes"]["web"]["classes"][2] >= 4


def test_access_log_has_one_json_line_per_request(stack: Stack) -> None:
    """Each proxied request writes one JSON line with its route, upstream, status and duration."""
    rid = "log-test-1"
    httpx.get(f"{stack.url}/web/id", headers={"X-Request-Id": rid})

    def logged() -> list[dict[str, object]]:
        return [orjson.loads(line) for line in stack.gateway.access_log() if rid in line]

    wait_for(lambda: len(logged()) == 1, timeout=5, what="access log line")
    (line,) = logged()
    assert line["route"] == "web" and line["status"] == 200 and line["method"] == "GET"
    assert str(line["upstream"]).startswith("web/web-")
    assert isinstance(line["ms"], float)


def test_connection_limit_refuses_extra_clients(stack: Stack) -> None:
    """With --max-connections 2 a third concurrent client gets 503 and is closed; the first two work."""
    gateway = GatewayProcess(stack.agent.url, "--max-connections", "2", "--access-log", "").start()
    try:
        addr = gateway.host_port
        with socket.create_connection(addr) as one, socket.create_connection(addr) as two:
            time.sleep(0.2)
            assert raw_request(addr, b"GET /web/id HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 503")
            one.sendall(b"GET /web/id HTTP/1.1\r\nHost: x\r\n\r\n")
            assert one.recv(65536).startswith(b"HTTP/1.1 200")
            two.sendall(b"GET /web/id HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert two.recv(65536).startswith(b"HTTP/1.1 200")
    finally:
        gateway.stop()


def test_pipelined_head_and_http10_requests(stack: Stack) -> None:
    """Pipelined requests are answered in order, HEAD gets no body, an HTTP/1.0 client gets a closed body."""
    addr = stack.gateway.host_port
    pipelined = (
        b"GET /web/echo?n=1 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"HEAD /web/id HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /web/echo?n=3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    answer = raw_request(addr, pipelined)
    assert answer.count(b"HTTP/1.1 200 OK") == 3
    assert answer.index(b'"query":"n=1"') < answer.index(b'"query":"n=3"')
    old = raw_request(addr, b"GET /web/bytes/10 HTTP/1.0\r\n\r\n")
    head, _, body = old.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding" not in head.lower()
    assert body == b"x" * 10


def test_workers_share_the_port_and_sum_their_metrics(stack: Stack) -> None:
    """With --workers 2 both processes serve the port and /_roost/metrics adds up every worker's count."""
    gateway = GatewayProcess(stack.agent.url, "--workers", "2", "--access-log", "").start()
    try:
        wait_for(lambda: httpx.get(f"{gateway.url}/web/id").status_code == 200, timeout=10, what="workers up")
        for _ in range(30):  # fresh connections, so the kernel spreads them over both workers
            assert httpx.get(f"{gateway.url}/web/id").status_code == 200

        def total() -> int:
            data = httpx.get(f"{gateway.url}/_roost/metrics?format=json").json()
            return int(data["routes"].get("web", {}).get("requests", 0))

        wait_for(lambda: total() >= 31, timeout=5, what="summed metrics")
    finally:
        gateway.stop()
    assert gateway.proc is not None and gateway.proc.returncode == 0


def test_stalled_upload_gets_408(stack: Stack) -> None:
    """A request body that stops arriving for longer than the body timeout (2 s) is answered 408."""
    addr = stack.gateway.host_port
    started = time.monotonic()
    answer = raw_request(
        addr, b"POST /web/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789", timeout=8
    )
    assert answer.startswith(b"HTTP/1.1 408") or answer == b""
    assert time.monotonic() - started < 6


def test_5xx_answers_eject_but_never_more_than_the_cap(stack: Stack) -> None:
    """Consecutive 500s are forwarded as they are and eject an instance, but only one of two (50% cap)."""
    register(stack.agent.url, "flaky", "flaky-a", stack.a.port)
    register(stack.agent.url, "flaky", "flaky-b", stack.b.port)
    wait_for(lambda: httpx.get(f"{stack.url}/flaky/id").status_code == 200, timeout=10, what="route")
    with httpx.Client(base_url=stack.url) as client:
        statuses = {client.get("/flaky/status/500").status_code for _ in range(14)}
        assert statuses == {500}
        states = [u["state"] for u in client.get("/_roost/upstreams").json()["flaky"]]
        assert sum(s.startswith("ejected") for s in states) == 1, states
        assert client.get("/flaky/id").status_code == 200


def test_connect_timeout_is_a_504(stack: Stack) -> None:
    """An instance whose accept queue is full never completes the handshake: 504 after the route's 0.5 s."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)  # never accepted: once the queue is full, further SYNs are dropped
        port = server.getsockname()[1]
        fillers = []
        for _ in range(4):
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(("127.0.0.1", port))
            fillers.append(c)
        try:
            register(stack.agent.url, "hang", "hang-1", port)
            wait_for(
                lambda: httpx.get(f"{stack.url}/_roost/upstreams").json().get("hang"), timeout=10, what="pool"
            )
            started = time.monotonic()
            resp = httpx.get(f"{stack.url}/hang/id", timeout=10)
            assert resp.status_code == 504, resp.text
            assert resp.json()["error"] == "connect timeout"
            assert time.monotonic() - started < 3
        finally:
            for c in fillers:
                c.close()


def raw_upstream(reply: bytes) -> socket.socket:
    """A loopback upstream that reads one request per connection, sends `reply` and closes."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(reply)

    threading.Thread(target=serve, daemon=True).start()
    return server


def test_close_delimited_response_is_passed_whole(stack: Stack) -> None:
    """An upstream answer with neither length nor chunking ends at the close, and reaches the client whole."""
    server = raw_upstream(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
        + b"hello " * 1000
        + b"until close"
    )
    try:
        register(stack.agent.url, "raw", "raw-1", server.getsockname()[1])
        wait_for(lambda: httpx.get(f"{stack.url}/raw/x").status_code == 200, timeout=10, what="raw route")
        resp = httpx.get(f"{stack.url}/raw/x")
        assert resp.content == b"hello " * 1000 + b"until close"
        assert resp.headers["transfer-encoding"] == "chunked"
    finally:
        server.close()


def test_answer_cut_short_is_retried_elsewhere_for_gets(stack: Stack) -> None:
    """An instance that dies halfway through an answer costs a GET nothing: it is retried on another."""
    server = raw_upstream(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhal")
    try:
        register(stack.agent.url, "half", "half-bad", server.getsockname()[1])
        register(stack.agent.url, "half", "half-good", stack.a.port)
        wait_for(
            lambda: len(httpx.get(f"{stack.url}/_roost/upstreams").json().get("half", [])) == 2,
            timeout=10,
            what="both instances",
        )
        with httpx.Client(base_url=stack.url) as client:
            for _ in range(6):
                resp = client.get("/half/id")
                assert resp.status_code == 200 and resp.json() == {"backend": "a"}
    finally:
        server.close()
