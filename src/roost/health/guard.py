"""Which checks this agent accepts and which addresses its probes may dial.

``--check-allow-cidr`` (repeatable) limits the targets of HTTP, TCP and gRPC checks, so that
registering a check cannot be used to make the agent probe arbitrary hosts. Without it every
address is allowed, as in Consul. A target given as an IP address is judged when the check is
registered (400 if outside). A host name is resolved before each probe and every address it
resolves to must be inside; the probe then dials the approved address.

Script checks run commands, so they are refused at registration unless the agent was started with
``--enable-script-checks`` (as Consul's ``enable_script_checks``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

from roost.errors import ValidationError
from roost.model import CheckDefinition, CheckKind

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TargetRefused(Exception):
    """The probe's target is outside the allowed networks."""


def target_host(definition: CheckDefinition) -> tuple[str, int] | None:
    """The host and port an HTTP, TCP or gRPC check dials; None for other kinds."""
    if definition.kind is CheckKind.HTTP:
        parts = urlsplit(definition.http)
        try:
            port = parts.port
        except ValueError:
            port = None
        return parts.hostname or "", port or (443 if parts.scheme == "https" else 80)
    if definition.kind is CheckKind.TCP:
        return split_target(definition.tcp, 0)
    if definition.kind is CheckKind.GRPC:
        return split_target(definition.grpc.partition("/")[0], 0)
    return None


def split_target(addr: str, default_port: int) -> tuple[str, int]:
    """'host:port' or '[v6]:port' -> (host, port)."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        return addr.strip("[]"), default_port
    return host.strip("[]"), int(port)


class CheckPolicy:
    """The registration-time rules: a callable that raises ValidationError, plus the probe-time
    address check."""

    def __init__(self, allow_cidrs: Sequence[str] = (), *, enable_script_checks: bool = False) -> None:
        self.networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(c.strip(), strict=False) for c in allow_cidrs if c.strip()
        )
        self.enable_script_checks = enable_script_checks

    @property
    def restricted(self) -> bool:
        return bool(self.networks)

    def allows_ip(self, address: str) -> bool:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.networks)

    def __call__(self, definition: CheckDefinition) -> None:
        """Raise ValidationError if this agent must not run the check."""
        if definition.kind is CheckKind.SCRIPT and not self.enable_script_checks:
            raise ValidationError(
                "script checks are disabled on this agent (start it with --enable-script-checks)",
                field="Check.Args",
            )
        if not self.restricted:
            return
        target = target_host(definition)
        if target is None:
            return
        host = target[0]
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return  # a name: judged on every probe, after resolution
        if not self.allows_ip(host):
            field = {CheckKind.HTTP: "Check.HTTP", CheckKind.TCP: "Check.TCP"}.get(
                definition.kind, "Check.GRPC"
            )
            raise ValidationError(
                f"{field} target {host} is outside the networks this agent may probe "
                f"(--check-allow-cidr {', '.join(str(n) for n in self.networks)})",
                field=field,
            )

    async def resolve(self, host: str, port: int) -> str:
        """The address to dial for `host`: every address it resolves to must be allowed.

        Raises TargetRefused. Call only when `restricted`."""
        try:
            ipaddress.ip_address(host)
            addresses = [host]
        except ValueError:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as exc:
                raise TargetRefused(f"cannot resolve {host}: {exc.strerror or exc}") from None
            addresses = [str(info[4][0]) for info in infos]
        if not addresses:
            raise TargetRefused(f"cannot resolve {host}")
        for address in addresses:
            if not self.allows_ip(address):
                raise TargetRefused(
                    f"target {host} ({address}) is outside the networks this agent may probe "
                    "(--check-allow-cidr)"
                )
        return addresses[0]
