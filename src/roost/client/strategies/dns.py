"""DNS SRV (with an A/AAAA fallback) against any resolver, honouring SRV priority and weight.

DNS cannot push, so this strategy re-asks after each answer's TTL (clamped to ``min_refresh`` ..
``max_refresh``) and yields only when the answer changed. SRV targets are resolved from the
additional section when the server sends it (roost and Consul do), else with an A query.
Instances keep the SRV priority; :meth:`Discovery.pick` uses only the lowest priority that has an
instance available, and the ``weighted`` policy follows the SRV weight.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import dns.asyncquery
import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype
import dns.resolver

from roost.client.instance import Instance
from roost.config import split_host_port
from roost.errors import Unavailable


def system_nameservers() -> list[str]:
    """The resolvers of /etc/resolv.conf (through dnspython)."""
    try:
        return [str(ns) for ns in dns.resolver.Resolver().nameservers]
    except dns.exception.DNSException:
        return ["127.0.0.1"]


class DnsStrategy:
    """Find instances with DNS.

    Args:
        nameservers: ``"ip"`` or ``"ip:port"`` of the resolvers to ask (default: the system's).
        srv_name: the SRV name, ``{service}`` replaced (``"{service}.service.consul"``); "" skips SRV.
        a_name: the A/AAAA name asked when SRV has no answer (``"{service}.service.consul"``).
        default_port: the port of instances found by A/AAAA.
        min_refresh, max_refresh: bounds of the re-query interval (seconds) around the TTL.
        timeout: seconds per query.
    """

    name = "dns"

    def __init__(
        self,
        nameservers: Sequence[str] | None = None,
        *,
        srv_name: str = "{service}.service.consul",
        a_name: str = "{service}.service.consul",
        default_port: int = 80,
        min_refresh: float = 1.0,
        max_refresh: float = 30.0,
        timeout: float = 2.0,
    ) -> None:
        self.servers = [
            split_host_port(s, 53, default_host="") for s in (nameservers or system_nameservers())
        ]
        self.srv_name = srv_name
        self.a_name = a_name
        self.default_port = default_port
        self.min_refresh = min_refresh
        self.max_refresh = max_refresh
        self.timeout = timeout

    async def _ask(self, qname: str, rdtype: dns.rdatatype.RdataType) -> dns.message.Message:
        query = dns.message.make_query(qname, rdtype)
        last: Exception | None = None
        for host, port in self.servers:
            try:
                response, _ = await dns.asyncquery.udp_with_fallback(
                    query, host, port=port, timeout=self.timeout
                )
            except (dns.exception.DNSException, OSError) as exc:
                last = exc
                continue
            if response.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
                return response
            last = Unavailable(f"{host}:{port} answered {dns.rcode.to_text(response.rcode())} for {qname}")
        raise Unavailable(f"no DNS server answered {qname} {rdtype.name}: {last}")

    async def _addresses(self, qname: str) -> tuple[list[str], float]:
        ips: list[str] = []
        ttl = self.max_refresh
        for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            msg = await self._ask(qname, rdtype)
            for rrset in msg.answer:
                if rrset.rdtype == rdtype:
                    ips.extend(r.address for r in rrset)
                    ttl = min(ttl, rrset.ttl)
            if ips:
                break
        return ips, ttl

    async def resolve(self, service: str) -> tuple[tuple[Instance, ...], float]:
        """One lookup: (instances sorted by id, seconds until the answer should be re-asked)."""
        found: list[Instance] = []
        ttl = self.max_refresh
        if self.srv_name:
            msg = await self._ask(self.srv_name.format(service=service), dns.rdatatype.SRV)
            glue: dict[str, list[str]] = {}
            for rrset in msg.additional:
                if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                    glue.setdefault(rrset.name.to_text(), []).extend(r.address for r in rrset)
            for rrset in msg.answer:
                if rrset.rdtype != dns.rdatatype.SRV:
                    continue
                ttl = min(ttl, rrset.ttl)
                for srv in rrset:
                    target = srv.target.to_text()
                    addrs = glue.get(target)
                    if addrs is None:
                        addrs, _ = await self._addresses(target)
                        addrs = addrs or [target.rstrip(".")]
                    for addr in addrs:
                        found.append(
                            Instance(
                                service=service,
                                id=f"{addr}:{srv.port}",
                                address=addr,
                                port=srv.port,
                                weight=srv.weight,
                                priority=srv.priority,
                                meta={"target": target},
                            )
                        )
        if not found and self.a_name:
            ips, ttl = await self._addresses(self.a_name.format(service=service))
            found = [Instance(service, f"{ip}:{self.default_port}", ip, self.default_port) for ip in ips]
        unique = {i.id: i for i in found}
        return tuple(sorted(unique.values(), key=lambda i: i.id)), min(
            max(ttl, self.min_refresh), self.max_refresh
        )

    async def updates(self, service: str) -> AsyncIterator[tuple[Instance, ...]]:
        last: tuple[Instance, ...] | None = None
        while True:
            instances, refresh = await self.resolve(service)
            if instances != last:
                last = instances
                yield instances
            await asyncio.sleep(refresh)

    async def aclose(self) -> None:
        pass
