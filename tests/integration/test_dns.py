"""The DNS interface of a real agent, asked with `dig` and with dnspython's resolver."""

from __future__ import annotations

import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.resolver
import httpx
import pytest

from tests.integration.procs import AgentProcess, wait_for

NODE = "dnsnode"


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    """One agent for the module, with web (3 instances, tags, weights, TTL checks), db (IPv6) and big (35)."""
    data = tmp_path_factory.mktemp("dns") / "agent"
    proc = AgentProcess(
        data,
        "--node",
        NODE,
        "--advertise",
        "127.0.0.9",
        "--k8s-zone",
        "cluster.local",
        "--alt-domain",
        "roost.",
        "--dns-service-ttl",
        "7",
        "--dns-service-ttl",
        "db=11",
        "--dns-negative-ttl",
        "3",
    ).start()
    try:
        with httpx.Client(base_url=proc.url, timeout=10) as http:
            for i in (1, 2, 3):
                register(
                    http,
                    {
                        "ID": f"web{i}",
                        "Name": "web",
                        "Address": f"10.0.0.{i}",
                        "Port": 8000 + i,
                        "Tags": ["prod", f"v{i}"],
                        "Weights": {"Passing": 10 * i, "Warning": 1},
                        "TaggedAddresses": {"grpc": {"Address": f"10.0.1.{i}", "Port": 9000 + i}},
                        "Check": {"CheckID": f"web{i}-ttl", "TTL": "300s", "Status": "passing"},
                    },
                )
            register(http, {"ID": "db1", "Name": "db", "Address": "fd00::1", "Port": 5432})
            register(http, {"ID": "local1", "Name": "local", "Port": 7000})  # no address: the node's
            register(http, {"ID": "ext1", "Name": "ext", "Address": "db.example.internal", "Port": 5432})
            for i in range(35):
                register(
                    http, {"ID": f"big{i}", "Name": "big", "Address": f"10.1.0.{i + 1}", "Port": 9000 + i}
                )
        yield proc
    finally:
        proc.stop()


def register(http: httpx.Client, body: dict[str, object]) -> None:
    assert http.put("/v1/agent/service/register", json=body).status_code == 200


def dig(agent: AgentProcess, *args: str) -> str:
    host, port = agent.dns_host_port
    out = subprocess.run(
        ["dig", f"@{host}", "-p", str(port), "+time=2", "+tries=2", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return out.stdout


def short(agent: AgentProcess, *args: str) -> list[str]:
    return sorted(line for line in dig(agent, "+short", *args).splitlines() if line)


def resolver(agent: AgentProcess) -> dns.resolver.Resolver:
    host, port = agent.dns_host_port
    r = dns.resolver.Resolver(configure=False)
    r.nameservers = [host]
    r.port = port
    r.lifetime = 5
    r.cache = None
    return r


def resolve(agent: AgentProcess, name: str, rdtype: str = "A") -> list[str]:
    return sorted(rd.to_text() for rd in resolver(agent).resolve(name, rdtype))


def status(output: str) -> str:
    m = re.search(r"status: (\w+)", output)
    assert m, output
    return m.group(1)


WEB = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]


def test_service_a_records(agent: AgentProcess) -> None:
    """<name>.service.<domain>, with or without the datacenter and on the alt domain, gives every instance."""
    assert short(agent, "web.service.consul") == WEB
    assert short(agent, "web.service.dc1.consul", "A") == WEB
    assert short(agent, "web.service.roost") == WEB
    assert resolve(agent, "web.service.consul") == WEB
    assert resolve(agent, "WEB.Service.Consul.") == WEB
    assert resolve(agent, "local.service.consul") == ["127.0.0.9"]  # the node address stands in


def test_aaaa_records(agent: AgentProcess) -> None:
    """AAAA answers the IPv6 instances; A for an IPv6-only service is NOERROR with no records."""
    assert short(agent, "db.service.consul", "AAAA") == ["fd00::1"]
    assert re.search(r"db\.service\.consul\.\s+11\s+IN\s+AAAA", dig(agent, "db.service.consul", "AAAA"))
    assert resolve(agent, "db.service.consul", "AAAA") == ["fd00::1"]
    out = dig(agent, "db.service.consul", "A")
    assert status(out) == "NOERROR" and "ANSWER: 0" in out and "SOA" in out
    with pytest.raises(dns.resolver.NoAnswer):
        resolver(agent).resolve("db.service.consul", "A")


def test_host_name_address_is_a_cname(agent: AgentProcess) -> None:
    """An instance registered with a host name is answered with a CNAME to it, as Consul does."""
    out = dig(agent, "ext.service.consul", "A")
    assert status(out) == "NOERROR"
    assert re.search(r"ext\.service\.consul\.\s+\d+\s+IN\s+CNAME\s+db\.example\.internal\.", out), out
    srv = dig(agent, "_ext._tcp.service.consul", "SRV")
    assert re.search(r"SRV\s+1 \d+ 5432 db\.example\.internal\.", srv), srv


def test_tag_filters(agent: AgentProcess) -> None:
    """<tag>.<name>.service and _<name>._<tag>.service keep only instances with the tag."""
    assert short(agent, "v2.web.service.consul") == ["10.0.0.2"]
    assert resolve(agent, "prod.web.service.consul") == WEB
    assert short(agent, "_web._v3.service.consul", "SRV") == ["1 30 8003 0a000003.addr.dc1.consul."]
    assert resolve(agent, "_web._v1.service.consul", "SRV") == ["1 10 8001 0a000001.addr.dc1.consul."]
    assert status(dig(agent, "v9.web.service.consul")) == "NXDOMAIN"


def test_srv_with_additional_records(agent: AgentProcess) -> None:
    """RFC 2782 SRV answers: priority 1, weight from Weights, the port, and A records of the targets."""
    expected = [f"1 {10 * i} {8000 + i} 0a00000{i}.addr.dc1.consul." for i in (1, 2, 3)]
    assert short(agent, "_web._tcp.service.consul", "SRV") == expected
    out = dig(agent, "_web._tcp.service.consul", "SRV", "+noall", "+additional")
    for i in (1, 2, 3):
        assert re.search(rf"0a00000{i}\.addr\.dc1\.consul\.\s+7\s+IN\s+A\s+10\.0\.0\.{i}", out), out
    answer = resolver(agent).resolve("_web._tcp.service.consul", "SRV")
    assert sorted(rd.to_text() for rd in answer) == expected
    glue = {rrset.name.to_text(): rrset[0].to_text() for rrset in answer.response.additional}
    assert glue == {f"0a00000{i}.addr.dc1.consul.": f"10.0.0.{i}" for i in (1, 2, 3)}
    assert short(agent, "0a000002.addr.dc1.consul") == ["10.0.0.2"]  # targets resolve too
    assert resolve(agent, "web.service.consul", "SRV") == expected  # SRV on the plain name, as Consul


def test_kubernetes_names(agent: AgentProcess) -> None:
    """<name>.<ns>.svc.<zone> answers like a headless service; _<port>._tcp names give SRV."""
    assert short(agent, "web.default.svc.cluster.local") == WEB
    assert resolve(agent, "web.default.svc.cluster.local") == WEB
    grpc = [f"1 {10 * i} {9000 + i} 0a00010{i}.addr.dc1.consul." for i in (1, 2, 3)]
    assert short(agent, "_grpc._tcp.web.default.svc.cluster.local", "SRV") == grpc
    http_srv = resolve(agent, "_http._tcp.web.default.svc.cluster.local", "SRV")
    assert http_srv == [f"1 {10 * i} {8000 + i} 0a00000{i}.addr.dc1.consul." for i in (1, 2, 3)]
    assert status(dig(agent, "web.other.svc.cluster.local")) == "NXDOMAIN"


def test_node_name(agent: AgentProcess) -> None:
    """<node>.node.<domain> answers the agent's own address; another node is NXDOMAIN."""
    assert short(agent, f"{NODE}.node.consul") == ["127.0.0.9"]
    assert resolve(agent, f"{NODE}.node.dc1.consul") == ["127.0.0.9"]
    assert status(dig(agent, "other.node.consul")) == "NXDOMAIN"


def test_protocol_behaviour(agent: AgentProcess) -> None:
    """AA on answers, NXDOMAIN + SOA for unknown names, NODATA for other types, REFUSED elsewhere, TTLs."""
    out = dig(agent, "web.service.consul")
    assert re.search(r"flags: qr aa rd;", out), out
    assert re.search(r"web\.service\.consul\.\s+7\s+IN\s+A", out), out
    out = dig(agent, "nope.service.consul")
    assert status(out) == "NXDOMAIN"
    assert re.search(r"consul\.\s+3\s+IN\s+SOA\s+ns\.consul\. hostmaster\.consul\.", out), out
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolver(agent).resolve("nope.service.consul")
    out = dig(agent, "web.service.consul", "TXT")
    assert status(out) == "NOERROR" and "ANSWER: 0" in out and "SOA" in out
    assert status(dig(agent, "example.com")) == "REFUSED"
    assert "EDNS: version: 0" in dig(agent, "web.service.consul", "+edns=0")


def test_tc_bit_and_tcp_fallback(agent: AgentProcess) -> None:
    """With 35 instances the UDP answer is truncated with TC set; TCP returns all of them."""
    host, port = agent.dns_host_port
    query = dns.message.make_query("big.service.consul", "A")
    udp = dns.query.udp(query, host, port=port, timeout=5)
    assert udp.flags & dns.flags.TC
    assert 0 < sum(len(r) for r in udp.answer) < 35
    tcp = dns.query.tcp(query, host, port=port, timeout=5)
    assert not tcp.flags & dns.flags.TC and sum(len(r) for r in tcp.answer) == 35
    out = dig(agent, "big.service.consul", "+noedns", "+ignore")
    assert "flags: qr aa tc rd;" in out, out
    assert len(short(agent, "big.service.consul", "+tcp")) == 35
    assert len(short(agent, "_big._tcp.service.consul", "SRV", "+noedns")) == 35  # dig retries on TCP
    assert len(resolve(agent, "_big._tcp.service.consul", "SRV")) == 35  # so does dnspython


def test_critical_instance_disappears(agent: AgentProcess) -> None:
    """An instance whose TTL check is failed leaves the answers at once, and comes back when it passes."""
    with httpx.Client(base_url=agent.url, timeout=10) as http:
        register(
            http,
            {"ID": "flap1", "Name": "flap", "Address": "10.2.0.1", "Port": 1, "Check": {"TTL": "300s"}},
        )
        register(
            http,
            {"ID": "flap2", "Name": "flap", "Address": "10.2.0.2", "Port": 2, "Check": {"TTL": "300s"}},
        )
        assert status(dig(agent, "flap.service.consul")) == "NXDOMAIN"  # TTL checks start critical
        for i in (1, 2):
            assert http.put(f"/v1/agent/check/pass/service:flap{i}").status_code == 200
        wait_for(lambda: short(agent, "flap.service.consul") == ["10.2.0.1", "10.2.0.2"], what="both passing")
        assert http.put("/v1/agent/check/fail/service:flap1").status_code == 200
        assert short(agent, "flap.service.consul") == ["10.2.0.2"]
        assert resolve(agent, "_flap._tcp.service.consul", "SRV") == ["1 1 2 0a020002.addr.dc1.consul."]
        assert http.put("/v1/agent/check/warn/service:flap1").status_code == 200
        assert short(agent, "flap.service.consul") == ["10.2.0.1", "10.2.0.2"]  # warning still counts
        assert http.put("/v1/agent/service/maintenance/flap2?enable=true").status_code == 200
        assert short(agent, "flap.service.consul") == ["10.2.0.1"]


def test_only_passing(start_agent: object, tmp_path: Path) -> None:
    """--dns-only-passing leaves instances with a warning check out."""
    assert callable(start_agent)
    proc: AgentProcess = start_agent("--dns-only-passing")
    with httpx.Client(base_url=proc.url, timeout=10) as http:
        for i in (1, 2):
            body = {"ID": f"s{i}", "Name": "s", "Address": f"10.3.0.{i}", "Check": {"TTL": "300s"}}
            register(http, body)
        assert http.put("/v1/agent/check/pass/service:s1").status_code == 200
        assert http.put("/v1/agent/check/warn/service:s2").status_code == 200
    assert short(proc, "s.service.consul") == ["10.3.0.1"]


def test_recursor_forwards_outside_names(agent: AgentProcess, start_agent: object) -> None:
    """With --dns-recursor, names outside the agent's zones are forwarded and the answer relayed."""
    assert callable(start_agent)
    host, port = agent.dns_host_port
    front: AgentProcess = start_agent("--domain", "front.", "--dns-recursor", f"{host}:{port}")
    assert short(front, "web.service.consul") == WEB  # not ours: asked of the other agent
    assert resolve(front, "_web._v1.service.consul", "SRV") == ["1 10 8001 0a000001.addr.dc1.consul."]
    assert short(front, "web.service.consul", "+tcp") == WEB
    out = dig(front, "nope.service.consul")
    assert status(out) == "NXDOMAIN" and re.search(r"flags: qr aa rd ra;", out), out
    assert status(dig(agent, "example.com")) == "REFUSED"  # the other agent has no recursor


def test_tcp_pipelining(agent: AgentProcess) -> None:
    """Several queries written at once on one TCP connection each get their answer on it."""
    host, port = agent.dns_host_port
    queries = [
        dns.message.make_query(n, "A") for n in ("web.service.consul", "v1.web.service.consul", "x.consul")
    ]
    wire = b"".join(len(w).to_bytes(2, "big") + w for w in (q.to_wire() for q in queries))
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(wire)
        stream = sock.makefile("rb")
        answers = {}
        for _ in queries:
            size = int.from_bytes(stream.read(2), "big")
            response = dns.message.from_wire(stream.read(size))
            answers[response.id] = response
    assert sorted(answers) == sorted(q.id for q in queries)
    assert answers[queries[0].id].rcode() == dns.rcode.NOERROR and len(answers[queries[0].id].answer[0]) == 3
    assert [rd.to_text() for rd in answers[queries[1].id].answer[0]] == ["10.0.0.1"]
    assert answers[queries[2].id].rcode() == dns.rcode.NXDOMAIN
