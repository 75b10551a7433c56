"""DNS answers from the catalog. Sans-IO: a name, a type and a catalog state in, records out.

`lookup()` decides what a name means (Consul's names under the agent's domains, Kubernetes-style
names under the optional cluster zone) and returns an `Answer`: an rcode, the answer records
grouped into `Unit`s (one A record, or one SRV record with the A/AAAA record of its target),
the authority section, and the catalog topic the answer depends on. `render()` turns an answer
into wire bytes for one order of its units and one size limit. The cache (cache.py) calls both
only when the catalog changes, so nothing here is on the per-query path.

Names (the datacenter label is optional, as in Consul):

* ``<name>.service[.<dc>].<domain>``        A / AAAA / SRV of healthy instances
* ``<tag>.<name>.service[.<dc>].<domain>``  the same, filtered by tag
* ``_<name>._<tag|tcp>.service[.<dc>].<domain>``  RFC 2782 SRV; ``_tcp`` means no tag filter
* ``<node>.node[.<dc>].<domain>``           the agent's own address
* ``<hex-ip>.addr[.<dc>].<domain>``         the address spelled in hex: the SRV targets
* ``<name>.<namespace>.svc.<zone>``         A / AAAA of healthy instances (a headless service)
* ``_<port>._<proto>.<name>.<namespace>.svc.<zone>``  SRV; ``<port>`` picks a tagged address
  of that name where an instance has one, and its main port otherwise
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from roost.catalog.state import CatalogState, Entry
from roost.catalog.waiters import service_topic
from roost.config import AgentConfig
from roost.model.health import Status, is_healthy

A = dns.rdatatype.A
AAAA = dns.rdatatype.AAAA
SRV = dns.rdatatype.SRV
SOA = dns.rdatatype.SOA
NS = dns.rdatatype.NS
ANY = dns.rdatatype.ANY
CNAME = dns.rdatatype.CNAME
IN = dns.rdataclass.IN

_VERSIONS: dict[int, tuple[int, ...]] = {A: (4,), AAAA: (6,), ANY: (4, 6)}  # IP versions per qtype
_KINDS = ("service", "node", "addr")
EDNS_PAYLOAD = 1232  # what we advertise (DNS flag day 2020)
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Settings:
    """What the answers depend on besides the catalog: built once from the agent's config."""

    domains: tuple[dns.name.Name, ...]
    datacenter: str
    node_name: str
    node_address: str
    only_passing: bool = False
    service_ttl: int = 0
    service_ttls: tuple[tuple[str, int], ...] = ()  # (name or "prefix*", seconds), lower case
    node_ttl: int = 0
    negative_ttl: int = 0
    k8s_zone: dns.name.Name | None = None
    k8s_namespace: str = "default"
    recursion: bool = False  # a recursor is configured: names outside our zones are forwarded
    serial: int = 1

    @classmethod
    def from_config(cls, config: AgentConfig, *, serial: int = 1) -> Settings:
        domains = [dns.name.from_text(config.domain or "consul.")]
        if config.alt_domain:
            domains.append(dns.name.from_text(config.alt_domain))
        zone = dns.name.from_text(config.k8s_zone) if config.k8s_zone else None
        return cls(
            domains=tuple(d.canonicalize() for d in domains),
            datacenter=config.datacenter.lower(),
            node_name=config.node_name.lower(),
            node_address=config.node_address,
            only_passing=config.dns_only_passing,
            service_ttl=config.dns_service_ttl,
            service_ttls=tuple((n.lower(), t) for n, t in config.dns_service_ttls),
            node_ttl=config.dns_node_ttl,
            negative_ttl=config.dns_negative_ttl,
            k8s_zone=zone.canonicalize() if zone is not None else None,
            k8s_namespace=config.k8s_namespace.lower(),
            recursion=bool(config.dns_recursors),
            serial=serial,
        )

    def ttl_for(self, service: str) -> int:
        """The TTL of a service's answers: its own, else the longest matching `prefix*`, else the default."""
        best, best_len = self.service_ttl, -1
        for name, ttl in self.service_ttls:
            if name == service:
                return ttl
            if name.endswith("*") and service.startswith(name[:-1]) and len(name) > best_len:
                best, best_len = ttl, len(name)
        return best


@dataclass(frozen=True, slots=True)
class Unit:
    """Records that travel together when answers are shuffled or truncated."""

    answer: dns.rrset.RRset
    additional: tuple[dns.rrset.RRset, ...] = ()


@dataclass(frozen=True, slots=True)
class Answer:
    rcode: dns.rcode.Rcode
    units: tuple[Unit, ...] = ()
    authority: tuple[dns.rrset.RRset, ...] = ()
    additional: tuple[dns.rrset.RRset, ...] = ()  # not shuffled, e.g. the glue of an NS answer
    topic: str | None = None  # the catalog topic this answer was built from; None: static
    authoritative: bool = True
    forward: bool = False  # outside our zones, and a recursor is configured


def lookup(state: CatalogState, settings: Settings, qname: dns.name.Name, qtype: int) -> Answer:
    """What the agent answers for `qname` (any case) and `qtype` (class IN)."""
    qname = qname.canonicalize()
    zone = _zone_of(qname, settings)
    if zone is None:
        if settings.recursion:
            return Answer(dns.rcode.NOERROR, authoritative=False, forward=True)
        return Answer(dns.rcode.REFUSED, authoritative=False)
    labels = [label.decode("latin-1") for label in qname.relativize(zone).labels]
    ctx = _Lookup(state, settings, zone, qname, qtype)
    if settings.k8s_zone is not None and zone == settings.k8s_zone:
        return ctx.k8s(labels)
    return ctx.consul(labels)


class _Lookup:
    def __init__(
        self, state: CatalogState, settings: Settings, zone: dns.name.Name, qname: dns.name.Name, qtype: int
    ) -> None:
        self.state = state
        self.settings = settings
        self.zone = zone
        self.qname = qname
        self.qtype = qtype
        # SRV targets live under the domain the question used (the primary one for the k8s zone)
        self.target_zone = zone if zone in settings.domains else settings.domains[0]

    # -- name forms ------------------------------------------------------------------------

    def consul(self, labels: list[str]) -> Answer:
        dc = self.settings.datacenter
        if labels and labels[-1] == dc:  # the optional datacenter label
            labels = labels[:-1]
            if not labels:
                return self.nodata()  # <dc>.<domain>: an empty non-terminal
        elif len(labels) >= 2 and labels[-1] not in _KINDS and labels[-2] in _KINDS:
            return self.nxdomain()  # another datacenter: we know only our own
        if not labels:
            return self.apex()
        kind, rest = labels[-1], labels[:-1]
        if kind == "service":
            return self.service_name(rest)
        if kind == "node":
            if not rest:
                return self.nodata()
            if rest == [self.settings.node_name]:
                return self.addresses([self.settings.node_address], self.settings.node_ttl)
            return self.nxdomain()
        if kind == "addr":
            if not rest:
                return self.nodata()
            address = _from_hex(rest[0]) if len(rest) == 1 else None
            if address is None:
                return self.nxdomain()
            return self.addresses([str(address)], self.settings.node_ttl)
        if labels == ["ns"]:
            return self.addresses([self.settings.node_address], self.settings.node_ttl)
        return self.nxdomain()

    def service_name(self, rest: list[str]) -> Answer:
        if not rest:
            return self.nodata()  # service.<domain>: an empty non-terminal
        if len(rest) == 1:
            if rest[0].startswith("_"):
                return self.nodata()  # _<tag>.service: the parent of an RFC 2782 name
            return self.service(rest[0], None, srv_only=False)
        if len(rest) == 2:
            first, second = rest
            if first.startswith("_") and second.startswith("_"):
                tag = second[1:]
                return self.service(first[1:], None if tag == "tcp" else tag, srv_only=True)
            return self.service(second, first, srv_only=False)
        return self.nxdomain()

    def k8s(self, labels: list[str]) -> Answer:
        ns = self.settings.k8s_namespace
        if not labels:
            return self.apex()
        if labels == ["svc"] or labels == [ns, "svc"]:
            return self.nodata()
        if len(labels) == 3 and labels[1:] == [ns, "svc"]:
            return self.service(labels[0], None, srv_only=False, srv_allowed=False)
        if len(labels) == 4 and labels[2:] == [ns, "svc"] and labels[0].startswith("_"):
            return self.nodata()  # _<proto>.<name>.<ns>.svc: an empty non-terminal
        if (
            len(labels) == 5
            and labels[3:] == [ns, "svc"]
            and labels[0].startswith("_")
            and labels[1] in ("_tcp", "_udp")
        ):
            return self.service(labels[2], None, srv_only=True, port_name=labels[0][1:])
        return self.nxdomain()

    # -- answers ---------------------------------------------------------------------------

    def service(
        self,
        name: str,
        tag: str | None,
        *,
        srv_only: bool,
        srv_allowed: bool = True,
        port_name: str | None = None,
    ) -> Answer:
        topic = service_topic(name)
        entries = self.healthy(name, tag)
        if not entries:
            return self.nxdomain(topic)  # no healthy instance: the name has no records (as Consul)
        ttl = self.settings.ttl_for(name.lower())
        qtype = self.qtype
        units: list[Unit] = []
        if srv_only or (qtype == SRV and srv_allowed):
            if qtype in (SRV, ANY):
                units = self.srv_units(entries, ttl, port_name)
        elif qtype in (A, AAAA, ANY):
            units = self.address_units(
                [e.service.address or self.settings.node_address for e in entries], ttl
            )
        if not units:
            return self.nodata(topic)
        return Answer(dns.rcode.NOERROR, tuple(units), topic=topic)

    def healthy(self, name: str, tag: str | None) -> list[Entry]:
        allow_warning = not self.settings.only_passing
        out = []
        for entry in self.state.instances(name):
            if not is_healthy(entry.status, allow_warning=allow_warning):
                continue
            if tag is not None and tag not in (t.lower() for t in entry.service.tags):
                continue
            out.append(entry)
        return out

    def srv_units(self, entries: Iterable[Entry], ttl: int, port_name: str | None) -> list[Unit]:
        units = []
        for entry in entries:
            svc = entry.service
            address, port = svc.address or self.settings.node_address, svc.port
            if port_name is not None and port_name in svc.tagged_addresses:
                tagged = svc.tagged_addresses[port_name]
                address, port = tagged.address or address, tagged.port
            weights = svc.weights
            weight = weights.warning if entry.status is Status.WARNING else weights.passing
            ip = _ip(address)
            additional: tuple[dns.rrset.RRset, ...] = ()
            if ip is None:  # a host name: the target as it is, resolved elsewhere
                try:
                    target = dns.name.from_text(address)
                except dns.exception.DNSException:
                    continue  # not a usable name either
            else:
                target = dns.name.from_text(
                    f"{ip.packed.hex()}.addr.{self.settings.datacenter}", self.target_zone
                )
                rdtype = A if ip.version == 4 else AAAA
                additional = (dns.rrset.from_text(target, ttl, IN, rdtype, str(ip)),)
            srv = dns.rrset.from_text(
                self.qname, ttl, IN, SRV, f"1 {max(0, min(weight, 65535))} {port} {target}"
            )
            units.append(Unit(srv, additional))
        return units

    def address_units(self, addresses: Sequence[str], ttl: int) -> list[Unit]:
        """One A/AAAA record per distinct IP address. Instances registered with a host name
        instead of an IP are answered, as Consul does, by a CNAME to that name, but only when no
        instance has an IP (a CNAME may not stand beside other records) and only one: the first
        in name order, so the answer stays the same from one query to the next."""
        wanted: tuple[int, ...] = _VERSIONS.get(self.qtype, ())
        seen: dict[IPAddress, None] = {}
        hosts: list[dns.name.Name] = []
        any_ip = False
        for text in addresses:
            ip = _ip(text)
            if ip is None:
                try:
                    hosts.append(dns.name.from_text(text))
                except dns.exception.DNSException:
                    continue  # neither an address nor a usable name
            else:
                any_ip = True
                if ip.version in wanted:
                    seen[ip] = None  # one record per address: an RRset is a set
        if not any_ip and hosts:
            target = min(hosts)
            return [Unit(dns.rrset.from_text(self.qname, ttl, IN, CNAME, target.to_text()))]
        return [
            Unit(dns.rrset.from_text(self.qname, ttl, IN, A if ip.version == 4 else AAAA, str(ip)))
            for ip in seen
        ]

    def addresses(self, addresses: Sequence[str], ttl: int) -> Answer:
        units = self.address_units(addresses, ttl)
        if not units:
            return self.nodata()
        return Answer(dns.rcode.NOERROR, tuple(units))

    def apex(self) -> Answer:
        if self.qtype == SOA:
            return Answer(dns.rcode.NOERROR, (Unit(self.soa()),))
        if self.qtype == NS:
            ns_name = dns.name.from_text("ns", self.zone)
            ns = dns.rrset.from_text(self.zone, self.settings.node_ttl, IN, NS, ns_name.to_text())
            ip = _ip(self.settings.node_address)
            glue: tuple[dns.rrset.RRset, ...] = ()
            if ip is not None:
                rdtype = A if ip.version == 4 else AAAA
                glue = (dns.rrset.from_text(ns_name, self.settings.node_ttl, IN, rdtype, str(ip)),)
            return Answer(dns.rcode.NOERROR, (Unit(ns),), additional=glue)
        return self.nodata()

    def soa(self) -> dns.rrset.RRset:
        s = self.settings
        mname = dns.name.from_text("ns", self.zone).to_text()
        rname = dns.name.from_text("hostmaster", self.zone).to_text()
        rdata = f"{mname} {rname} {s.serial} 3600 600 86400 {s.negative_ttl}"
        return dns.rrset.from_text(self.zone, s.negative_ttl, IN, SOA, rdata)

    def nxdomain(self, topic: str | None = None) -> Answer:
        return Answer(dns.rcode.NXDOMAIN, authority=(self.soa(),), topic=topic)

    def nodata(self, topic: str | None = None) -> Answer:
        return Answer(dns.rcode.NOERROR, authority=(self.soa(),), topic=topic)


def _zone_of(qname: dns.name.Name, settings: Settings) -> dns.name.Name | None:
    zones = [*settings.domains, *([settings.k8s_zone] if settings.k8s_zone is not None else [])]
    best: dns.name.Name | None = None
    for zone in zones:
        if qname.is_subdomain(zone) and (best is None or len(zone) > len(best)):
            best = zone
    return best


def _ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _from_hex(label: str) -> IPAddress | None:
    if len(label) not in (8, 32):
        return None
    try:
        return ipaddress.ip_address(bytes.fromhex(label))
    except ValueError:
        return None


# -- rendering -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Edns:
    """The EDNS0 part of a query that shapes the response."""

    payload: int
    do: bool = False


def render(
    answer: Answer,
    qname: dns.name.Name,
    qtype: int,
    qclass: int,
    *,
    order: Sequence[int] | None = None,
    edns: Edns | None = None,
    limit: int = 512,
    ra: bool = False,
) -> bytes:
    """The response in wire format with ID 0 and RD clear (the caller patches both per query).

    Units are written in `order` (default: as they are). When they do not all fit in `limit`
    bytes, as many whole units as fit are kept and TC is set, so the client retries over TCP."""
    units = [answer.units[i] for i in order] if order is not None else list(answer.units)
    msg = _message(answer, units, qname, qtype, qclass, edns, ra)
    wire = msg.to_wire(max_size=limit, prefer_truncation=True)
    if not wire[2] & 0x02:  # TC clear: everything fitted
        return wire
    # Keep whole units: the SRV records that fitted, with their own additional records only.
    fitted = int.from_bytes(wire[6:8], "big")
    kept, count = 0, 0
    for unit in units:
        count += len(unit.answer)
        if count > fitted:
            break
        kept += 1
    msg = _message(answer, units[:kept], qname, qtype, qclass, edns, ra)
    msg.flags |= dns.flags.TC
    return msg.to_wire(max_size=limit, prefer_truncation=True)


def _message(
    answer: Answer,
    units: Sequence[Unit],
    qname: dns.name.Name,
    qtype: int,
    qclass: int,
    edns: Edns | None,
    ra: bool,
) -> dns.message.Message:
    msg = dns.message.Message(id=0)
    msg.flags = dns.flags.QR | (dns.flags.AA if answer.authoritative else 0) | (dns.flags.RA if ra else 0)
    msg.question = [
        dns.rrset.RRset(qname, dns.rdataclass.RdataClass.make(qclass), dns.rdatatype.RdataType.make(qtype))
    ]
    msg.answer = [u.answer for u in units]
    msg.authority = list(answer.authority)
    additional: dict[tuple[dns.name.Name, int], dns.rrset.RRset] = {}
    for unit in units:
        for rrset in unit.additional:
            # one target per address, so the same key always carries the same record
            additional.setdefault((rrset.name, rrset.rdtype), rrset)
    msg.additional = [*additional.values(), *answer.additional]
    if edns is not None:
        msg.use_edns(0, dns.flags.DO if edns.do else 0, EDNS_PAYLOAD)
    msg.set_rcode(answer.rcode)
    return msg
