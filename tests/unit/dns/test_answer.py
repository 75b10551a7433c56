"""The sans-IO DNS core: names, records and rcodes from a catalog state, with no sockets."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import orjson
import pytest

from roost.catalog.state import CatalogState, check_key, service_key
from roost.config import AgentConfig
from roost.dns.answer import Settings, lookup, render
from roost.dns.cache import Forward, Responder
from roost.model import Check, CheckDefinition, CheckKind, Service, Status, Weights
from roost.model.health import MAINTENANCE_PREFIX
from roost.model.service import TaggedAddress
from roost.store.protocol import Change

CONFIG = AgentConfig(node_name="n1", node_address="10.9.9.9", k8s_zone="cluster.local", alt_domain="roost.")


class Catalog:
    """Feeds a CatalogState the changes a store would deliver: no store, no event loop."""

    def __init__(self) -> None:
        self.state = CatalogState("n1")
        self.index = 1
        self.names: dict[str, str] = {}

    def _apply(self, key: str, value: bytes | None) -> None:
        self.index += 1
        self.state.apply([Change(self.index, key, value)])

    def register(self, svc: Service, checks: tuple[CheckDefinition, ...] = ()) -> None:
        self.names[svc.id] = svc.name
        self._apply(service_key(svc.name, svc.id), orjson.dumps(svc.to_dict()))
        for definition in checks:
            self._apply(
                check_key(definition.id), orjson.dumps(Check(definition, Status.CRITICAL, "").to_dict())
            )

    def set_check_status(self, check_id: str, status: Status, output: str = "") -> None:
        check = self.state.checks[check_id].with_status(status, output)
        self._apply(check_key(check_id), orjson.dumps(check.to_dict()))

    def set_maintenance(self, service_id: str) -> None:
        definition = CheckDefinition(
            MAINTENANCE_PREFIX + service_id, "m", CheckKind.MANUAL, service_id=service_id
        )
        check = Check(definition, Status.CRITICAL, "maintenance")
        self._apply(check_key(definition.id), orjson.dumps(check.to_dict()))

    def deregister(self, service_id: str) -> None:
        self._apply(service_key(self.names[service_id], service_id), None)


def catalog() -> Catalog:
    return Catalog()


def ttl(check_id: str, service_id: str) -> CheckDefinition:
    return CheckDefinition(check_id, check_id, CheckKind.TTL, service_id=service_id, ttl=300)


def web(c: Catalog, n: int = 3) -> None:
    for i in range(1, n + 1):
        svc = Service(
            id=f"w{i}",
            name="web",
            address=f"10.0.0.{i}",
            port=8000 + i,
            tags=("prod", f"v{i}"),
            weights=Weights(passing=10 * i, warning=1),
            tagged_addresses={"grpc": TaggedAddress(f"10.0.1.{i}", 9000 + i)},
        )
        c.register(svc, [ttl(f"c{i}", f"w{i}")])
        c.set_check_status(f"c{i}", Status.PASSING, "ok")


def ask(
    responder: Responder, name: str, rdtype: str = "A", *, tcp: bool = False, **kw: object
) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, **kw)  # type: ignore[arg-type]
    reply = responder.respond(query.to_wire(), tcp=tcp)
    assert isinstance(reply, bytes)
    response = dns.message.from_wire(reply)
    assert response.id == query.id
    return response


def records(response: dns.message.Message, section: str = "answer") -> list[str]:
    return sorted(rd.to_text() for rrset in getattr(response, section) for rd in rrset)


def test_service_a_records_of_healthy_instances() -> None:
    """<name>.service.<domain> answers the A record of every passing instance, authoritatively."""
    c = catalog()
    web(c)
    r = ask(Responder(c.state, Settings.from_config(CONFIG)), "web.service.consul.")
    assert r.rcode() == dns.rcode.NOERROR
    assert r.flags & dns.flags.AA
    assert records(r) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]


def test_critical_and_warning_instances() -> None:
    """A critical instance is left out; a warning one stays unless only passing ones are wanted."""
    c = catalog()
    web(c)
    c.set_check_status("c1", Status.CRITICAL, "down")
    c.set_check_status("c2", Status.WARNING, "slow")
    r = ask(Responder(c.state, Settings.from_config(CONFIG)), "web.service.consul.")
    assert records(r) == ["10.0.0.2", "10.0.0.3"]
    only = AgentConfig(node_name="n1", dns_only_passing=True)
    assert records(ask(Responder(c.state, Settings.from_config(only)), "web.service.consul.")) == ["10.0.0.3"]


def test_maintenance_hides_an_instance() -> None:
    """An instance in maintenance is never answered."""
    c = catalog()
    web(c)
    c.set_maintenance("w3")
    assert records(ask(Responder(c.state, Settings.from_config(CONFIG)), "web.service.consul.")) == [
        "10.0.0.1",
        "10.0.0.2",
    ]


def test_cache_follows_the_catalog() -> None:
    """A cached answer is rebuilt as soon as the service's topic changes: no timer involved."""
    c = catalog()
    web(c)
    responder = Responder(c.state, Settings.from_config(CONFIG))
    assert len(records(ask(responder, "web.service.consul."))) == 3
    assert len(records(ask(responder, "web.service.consul."))) == 3
    assert responder.hits == 1
    c.set_check_status("c3", Status.CRITICAL, "down")
    assert records(ask(responder, "web.service.consul.")) == ["10.0.0.1", "10.0.0.2"]
    c.deregister("w1")
    assert records(ask(responder, "web.service.consul.")) == ["10.0.0.2"]


def test_tag_forms() -> None:
    """<tag>.<name>.service and _<name>._<tag>.service filter by tag; _tcp means no filter."""
    c = catalog()
    web(c)
    responder = Responder(c.state, Settings.from_config(CONFIG))
    assert records(ask(responder, "v2.web.service.consul.")) == ["10.0.0.2"]
    assert records(ask(responder, "V2.Web.Service.Consul.")) == ["10.0.0.2"]
    assert records(ask(responder, "_web._v3.service.consul.", "SRV")) == [
        "1 30 8003 0a000003.addr.dc1.consul."
    ]
    assert len(records(ask(responder, "_web._tcp.service.dc1.consul.", "SRV"))) == 3
    assert ask(responder, "v9.web.service.consul.").rcode() == dns.rcode.NXDOMAIN


def test_srv_weights_targets_and_additional() -> None:
    """SRV records carry priority 1, the Weights by status, the port, and the target's A record."""
    c = catalog()
    web(c)
    c.set_check_status("c2", Status.WARNING, "slow")
    r = ask(Responder(c.state, Settings.from_config(CONFIG)), "_web._tcp.service.consul.", "SRV")
    assert records(r) == [
        "1 1 8002 0a000002.addr.dc1.consul.",
        "1 10 8001 0a000001.addr.dc1.consul.",
        "1 30 8003 0a000003.addr.dc1.consul.",
    ]
    extra = {rrset.name.to_text(): rrset[0].to_text() for rrset in r.additional}
    assert extra == {f"0a00000{i}.addr.dc1.consul.": f"10.0.0.{i}" for i in (1, 2, 3)}


def test_addr_node_and_apex_names() -> None:
    """The .addr. targets, <node>.node and the zone apex (SOA, NS with glue) resolve."""
    c = catalog()
    responder = Responder(c.state, Settings.from_config(CONFIG))
    assert records(ask(responder, "0a000002.addr.dc1.consul.")) == ["10.0.0.2"]
    assert records(ask(responder, "00000000000000000000000000000001.addr.dc1.consul.", "AAAA")) == ["::1"]
    assert records(ask(responder, "n1.node.consul.")) == ["10.9.9.9"]
    assert records(ask(responder, "n1.node.dc1.roost.")) == ["10.9.9.9"]
    assert ask(responder, "n2.node.consul.").rcode() == dns.rcode.NXDOMAIN
    assert records(ask(responder, "consul.", "SOA"))[0].startswith("ns.consul. hostmaster.consul.")
    ns = ask(responder, "consul.", "NS")
    assert records(ns) == ["ns.consul."]
    assert records(ns, "additional") == ["10.9.9.9"]


def test_negative_answers() -> None:
    """Unknown names: NXDOMAIN + SOA; known name, other type: NODATA + SOA; elsewhere: REFUSED."""
    c = catalog()
    web(c)
    config = AgentConfig(node_name="n1", dns_negative_ttl=30)
    responder = Responder(c.state, Settings.from_config(config))
    nx = ask(responder, "nope.service.consul.")
    assert nx.rcode() == dns.rcode.NXDOMAIN
    assert nx.authority[0].rdtype == dns.rdatatype.SOA and nx.authority[0].ttl == 30
    nodata = ask(responder, "web.service.consul.", "TXT")
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer
    assert nodata.authority[0].rdtype == dns.rdatatype.SOA
    assert ask(responder, "web.service.consul.", "AAAA").answer == []
    assert ask(responder, "service.consul.").rcode() == dns.rcode.NOERROR  # an empty non-terminal
    refused = ask(responder, "example.com.")
    assert refused.rcode() == dns.rcode.REFUSED and not refused.flags & dns.flags.AA
    assert ask(responder, "web.service.dc2.consul.").rcode() == dns.rcode.NXDOMAIN


def test_kubernetes_names() -> None:
    """<name>.<ns>.svc.<zone> answers A; _<port>._tcp SRV picks a tagged address of that name."""
    c = catalog()
    web(c, 2)
    responder = Responder(c.state, Settings.from_config(CONFIG))
    assert records(ask(responder, "web.default.svc.cluster.local.")) == ["10.0.0.1", "10.0.0.2"]
    assert records(ask(responder, "_http._tcp.web.default.svc.cluster.local.", "SRV")) == [
        "1 10 8001 0a000001.addr.dc1.consul.",
        "1 20 8002 0a000002.addr.dc1.consul.",
    ]
    grpc = ask(responder, "_grpc._tcp.web.default.svc.cluster.local.", "SRV")
    assert records(grpc) == ["1 10 9001 0a000101.addr.dc1.consul.", "1 20 9002 0a000102.addr.dc1.consul."]
    assert records(grpc, "additional") == ["10.0.1.1", "10.0.1.2"]
    assert ask(responder, "web.other.svc.cluster.local.").rcode() == dns.rcode.NXDOMAIN


def test_truncation_and_tcp() -> None:
    """An answer over 512 bytes is cut to whole records with TC set; EDNS and TCP get more."""
    c = catalog()
    for i in range(40):
        c.register(Service(id=f"b{i}", name="big", address=f"10.1.0.{i}", port=9000 + i))
    responder = Responder(c.state, Settings.from_config(CONFIG))
    udp = ask(responder, "big.service.consul.")
    assert udp.flags & dns.flags.TC
    assert 0 < len(records(udp)) < 40
    srv = ask(responder, "_big._tcp.service.consul.", "SRV")
    assert srv.flags & dns.flags.TC
    targets = {rd.target for rrset in srv.answer for rd in rrset}
    assert {rrset.name for rrset in srv.additional} <= targets  # no glue for records that were cut
    assert len(records(ask(responder, "big.service.consul.", use_edns=0, payload=4096))) == 40
    tcp = ask(responder, "_big._tcp.service.consul.", "SRV", tcp=True)
    assert not tcp.flags & dns.flags.TC
    assert len(records(tcp)) == 40 and len(tcp.additional) == 40


def test_order_rotates_between_queries() -> None:
    """Successive queries see the instances in different orders, each leading in turn."""
    c = catalog()
    web(c)
    responder = Responder(c.state, Settings.from_config(CONFIG))
    firsts = {ask(responder, "web.service.consul.").answer[0][0].to_text() for _ in range(6)}
    assert firsts == {"10.0.0.1", "10.0.0.2", "10.0.0.3"}


def test_header_bits_echoed() -> None:
    """The reply carries the query's ID, RD bit, question case and EDNS (with DO echoed)."""
    c = catalog()
    web(c)
    responder = Responder(c.state, Settings.from_config(CONFIG))
    query = dns.message.make_query("WeB.SeRvIcE.CoNsUl.", "A", use_edns=0, want_dnssec=True)
    query.flags &= ~dns.flags.RD
    reply = responder.respond(query.to_wire())
    assert isinstance(reply, bytes)
    r = dns.message.from_wire(reply)
    assert not r.flags & dns.flags.RD
    assert r.question[0].name.to_text() == "WeB.SeRvIcE.CoNsUl."
    assert r.edns == 0 and r.ednsflags & dns.flags.DO
    assert ask(responder, "web.service.consul.").flags & dns.flags.RD


def test_malformed_packets() -> None:
    """Short packets and responses get silence; a readable header with garbage gets FORMERR."""
    c = catalog()
    responder = Responder(c.state, Settings.from_config(CONFIG))
    assert responder.respond(b"") is None
    assert responder.respond(b"\x12\x34\x01") is None
    reply = responder.respond(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03ab")
    assert isinstance(reply, bytes)
    assert reply[:2] == b"\x12\x34" and reply[3] & 0x0F == dns.rcode.FORMERR
    response_packet = dns.message.make_response(dns.message.make_query("web.service.consul.", "A"))
    assert responder.respond(response_packet.to_wire()) is None
    loop = b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01"  # pointer to itself
    reply = responder.respond(loop)
    assert isinstance(reply, bytes) and reply[3] & 0x0F == dns.rcode.FORMERR


def test_unusual_queries_use_the_slow_path() -> None:
    """EDNS version 1 gets BADVERS, other opcodes NOTIMP, two questions FORMERR, class CH REFUSED."""
    c = catalog()
    responder = Responder(c.state, Settings.from_config(CONFIG))
    badvers = ask(responder, "web.service.consul.", use_edns=1)
    assert badvers.rcode() == dns.rcode.BADVERS
    notify = dns.message.make_query("consul.", "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    reply = responder.respond(notify.to_wire())
    assert isinstance(reply, bytes) and reply[3] & 0x0F == dns.rcode.NOTIMP
    two = dns.message.make_query("a.service.consul.", "A")
    two.question.append(dns.message.make_query("b.service.consul.", "A").question[0])
    reply = responder.respond(two.to_wire())
    assert isinstance(reply, bytes) and reply[3] & 0x0F == dns.rcode.FORMERR
    assert ask(responder, "version.bind.", "TXT", rdclass="CH").rcode() == dns.rcode.REFUSED


def test_forward_outside_zones_when_a_recursor_is_set() -> None:
    """With a recursor configured, a name outside our zones is handed to the shell to forward."""
    c = catalog()
    responder = Responder(
        c.state, Settings.from_config(AgentConfig(node_name="n1", dns_recursors=("1.1.1.1",)))
    )
    query = dns.message.make_query("example.com.", "A")
    reply = responder.respond(query.to_wire())
    assert isinstance(reply, Forward) and reply.query.id == query.id


@pytest.mark.parametrize("limit", [512, 1232])
def test_render_never_exceeds_the_limit(limit: int) -> None:
    """Whatever the order, a rendered answer fits the size limit."""
    c = catalog()
    for i in range(100):
        c.register(Service(id=f"b{i}", name="big", address=f"fd00::{i + 1}", port=1 + i))
    settings = Settings.from_config(CONFIG)
    name = dns.name.from_text("_big._tcp.service.consul.")
    answer = lookup(c.state, settings, name, dns.rdatatype.SRV)
    assert len(answer.units) == 100
    wire = render(answer, name, dns.rdatatype.SRV, 1, order=list(range(99, -1, -1)), limit=limit)
    assert len(wire) <= limit
    assert dns.message.from_wire(wire).flags & dns.flags.TC


def test_services_named_like_keywords() -> None:
    """Services called node, addr or service resolve like any other name."""
    c = catalog()
    for name in ("node", "addr", "service"):
        c.register(Service(id=name, name=name, address="10.4.0.1", port=1))
    responder = Responder(c.state, Settings.from_config(CONFIG))
    for name in ("node", "addr", "service"):
        assert records(ask(responder, f"{name}.service.consul.")) == ["10.4.0.1"]
        assert records(ask(responder, f"{name}.service.dc1.consul.")) == ["10.4.0.1"]


def test_host_name_addresses() -> None:
    """An instance registered with a host name is an SRV target as it is and is left out of A answers."""
    c = catalog()
    c.register(Service(id="h1", name="h", address="db.example.com", port=5432))
    c.register(Service(id="h2", name="h", address="10.4.0.2", port=5432))
    responder = Responder(c.state, Settings.from_config(CONFIG))
    assert records(ask(responder, "h.service.consul.")) == ["10.4.0.2"]
    srv = ask(responder, "_h._tcp.service.consul.", "SRV")
    assert records(srv) == ["1 1 5432 0a040002.addr.dc1.consul.", "1 1 5432 db.example.com."]


def test_ttls_per_service() -> None:
    """Service answers take the TTL of their name, else of the longest matching prefix*, else the default."""
    c = catalog()
    for name in ("web", "api-a", "api-b", "db"):
        c.register(Service(id=name, name=name, address="10.4.0.1", port=1))
    config = AgentConfig(dns_service_ttl=5, dns_service_ttls=(("web", 30), ("api-*", 10), ("api-b*", 20)))
    responder = Responder(c.state, Settings.from_config(config))
    ttls = {n: ask(responder, f"{n}.service.consul.").answer[0].ttl for n in ("web", "api-a", "api-b", "db")}
    assert ttls == {"web": 30, "api-a": 10, "api-b": 20, "db": 5}
    assert ask(responder, "_web._tcp.service.consul.", "SRV").answer[0].ttl == 30
