"""roost.client's DNS and Kubernetes strategies against real DNS servers on loopback: a roost agent's
DNS interface, and a scripted one for what roost does not serve (priorities, A-only names, Kubernetes).

The scripted server is a small dnspython one run in a thread on a real UDP socket, answering from a table the
test edits (SRV with glue, A records, NXDOMAIN for the rest), in the manner of dnspython's own
nanonameserver.
"""

from __future__ import annotations

import asyncio
import random
import socket
import threading
from collections import Counter
from collections.abc import Iterator

import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from roost.client import BreakerConfig, Discovery, DnsStrategy, KubernetesStrategy
from tests.integration.procs import AgentProcess

Table = dict[tuple[str, str], list[str]]  # (name, type) -> rdata texts


class TinyDns:
    """A UDP DNS server on 127.0.0.1:0 answering from ``records``; TTL 1 s."""

    def __init__(self) -> None:
        self.records: Table = {}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.queries = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _rrset(self, name: str, rtype: str) -> dns.rrset.RRset | None:
        texts = self.records.get((name.lower(), rtype))
        if not texts:
            return None
        return dns.rrset.from_text_list(name, 1, dns.rdataclass.IN, rtype, texts)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.queries += 1
            query = dns.message.from_wire(data)
            response = dns.message.make_response(query)
            question = query.question[0]
            name, rtype = question.name.to_text(), dns.rdatatype.to_text(question.rdtype)
            answer = self._rrset(name, rtype)
            if answer is not None:
                response.answer.append(answer)
                if rtype == "SRV":
                    for target in {r.split()[-1] for r in self.records[(name.lower(), rtype)]}:
                        if (glue := self._rrset(target, "A")) is not None:
                            response.additional.append(glue)
            elif not any(key[0] == name.lower() for key in self.records):
                response.set_rcode(dns.rcode.NXDOMAIN)
            self.sock.sendto(response.to_wire(), peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def server() -> Iterator[TinyDns]:
    srv = TinyDns()
    yield srv
    srv.close()


async def test_srv_priority_and_weight_are_honoured(server: TinyDns) -> None:
    """Only the lowest SRV priority is used, split by SRV weight, until its breakers open."""
    server.records = {
        ("pay.service.consul.", "SRV"): [
            "10 1 8001 a.node.consul.",
            "10 3 8002 b.node.consul.",
            "20 1 8003 c.node.consul.",
        ],
        ("a.node.consul.", "A"): ["127.0.0.1"],
        ("b.node.consul.", "A"): ["127.0.0.2"],
        ("c.node.consul.", "A"): ["127.0.0.3"],
    }
    strategy = DnsStrategy([server.address])
    breaker = BreakerConfig(failure_threshold=1, open_timeout=60)
    async with Discovery(strategy, policy="weighted", breaker=breaker, rng=random.Random(1)) as d:
        instances = await d.discover("pay")
        assert {(i.address, i.port, i.priority, i.weight) for i in instances} == {
            ("127.0.0.1", 8001, 10, 1),
            ("127.0.0.2", 8002, 10, 3),
            ("127.0.0.3", 8003, 20, 1),
        }
        counts = Counter([(await d.pick("pay")).port for _ in range(4000)])
        assert counts[8003] == 0
        assert 2.5 < counts[8002] / counts[8001] < 3.5
        for inst in instances[:2]:
            d.breakers[inst.key].record_failure(d.clock())
        assert (await d.pick("pay")).port == 8003


async def test_a_record_fallback_and_updates_after_the_ttl(server: TinyDns) -> None:
    """With no SRV record, A records give instances on the default port; a changed answer is seen
    after its TTL."""
    server.records = {("web.service.consul.", "A"): ["127.0.0.5", "127.0.0.6"]}
    strategy = DnsStrategy([server.address], default_port=8080, min_refresh=0.2)
    async with Discovery(strategy) as d:
        assert {i.hostport for i in await d.discover("web")} == {"127.0.0.5:8080", "127.0.0.6:8080"}
        server.records = {("web.service.consul.", "A"): ["127.0.0.7"]}
        await d.wait_for_change("web", d.version("web"), timeout=5)
        assert [i.hostport for i in await d.discover("web")] == ["127.0.0.7:8080"]


async def test_kubernetes_names_with_named_port_and_plain_service(server: TinyDns) -> None:
    """Kubernetes DNS: SRV _http._tcp.<svc>.<ns>.svc.cluster.local for a named port, else A records."""
    server.records = {
        ("_http._tcp.api.shop.svc.cluster.local.", "SRV"): ["0 50 9090 10-0-0-1.api.shop.svc.cluster.local."],
        ("10-0-0-1.api.shop.svc.cluster.local.", "A"): ["127.0.0.9"],
        ("cart.shop.svc.cluster.local.", "A"): ["127.0.0.10"],
    }
    named = KubernetesStrategy([server.address], namespace="shop", port_name="http")
    plain = KubernetesStrategy([server.address], namespace="shop", default_port=8000)
    async with Discovery(named) as d1, Discovery(plain) as d2:
        assert [i.hostport for i in await d1.discover("api")] == ["127.0.0.9:9090"]
        assert [i.hostport for i in await d2.discover("cart")] == ["127.0.0.10:8000"]


async def test_unanswering_server_makes_discover_unavailable(server: TinyDns) -> None:
    """A name the server does not know yields no instances; a dead server gives Unavailable."""
    from roost.errors import Unavailable

    async with Discovery(DnsStrategy([server.address])) as d:
        assert await d.discover("nothing") == []
    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dead.bind(("127.0.0.1", 0))
    address = f"127.0.0.1:{dead.getsockname()[1]}"
    try:
        async with Discovery(DnsStrategy([address], timeout=0.2), first_wait=0.5) as d:
            with pytest.raises(Unavailable):
                await d.discover("web")
    finally:
        dead.close()
    await asyncio.sleep(0)


async def test_against_roost_agent_dns(agent: AgentProcess) -> None:
    """DnsStrategy reads a real agent's SRV answers (port, weight, glue address) and sees a
    deregistration on its next look-up."""
    import httpx

    for sid, port, weight in (("w1", 8081, 5), ("w2", 8082, 1)):
        body = {
            "Name": "web",
            "ID": sid,
            "Address": "127.0.0.1",
            "Port": port,
            "Weights": {"Passing": weight},
        }
        await asyncio.to_thread(httpx.put, agent.url + "/v1/agent/service/register", json=body, timeout=5)
    host, port = agent.dns_host_port
    strategy = DnsStrategy([f"{host}:{port}"], min_refresh=0.1)
    async with Discovery(strategy) as d:
        found = {(i.address, i.port, i.weight) for i in await d.discover("web")}
        assert found == {("127.0.0.1", 8081, 5), ("127.0.0.1", 8082, 1)}
        await asyncio.to_thread(httpx.put, agent.url + "/v1/agent/service/deregister/w2", timeout=5)
        await d.wait_for_change("web", d.version("web"), timeout=5)
        assert [i.port for i in await d.discover("web")] == [8081]
