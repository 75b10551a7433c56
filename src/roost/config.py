"""Typed configuration, built once at the edge (CLI flags, then environment, then defaults).

Only this module reads ``os.environ``.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

DEFAULT_HTTP_ADDR = "127.0.0.1:8500"
DEFAULT_DNS_ADDR = "127.0.0.1:8600"
DEFAULT_GATEWAY_ADDR = "127.0.0.1:8080"


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_list(name: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in os.environ.get(name, "").split(",") if p.strip())


def agent_http_addr() -> str:
    """Where client commands find the agent: ROOST_HTTP_ADDR, then CONSUL_HTTP_ADDR, then default."""
    return env("ROOST_HTTP_ADDR") or env("CONSUL_HTTP_ADDR") or DEFAULT_HTTP_ADDR


def split_host_port(addr: str, default_port: int) -> tuple[str, int]:
    """'127.0.0.1:8500', '[::1]:8500', 'localhost', ':8500' -> (host, port)."""
    addr = addr.strip()
    for scheme in ("http://", "https://"):
        if addr.startswith(scheme):
            addr = addr[len(scheme) :]
    addr = addr.rstrip("/")
    if addr.startswith("["):
        host, _, rest = addr[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif addr.count(":") == 1:
        host, _, port = addr.partition(":")
    else:
        host, port = addr, ""
    if port and not port.isdigit():
        raise ValueError(f"bad port in address {addr!r}")
    return host or "127.0.0.1", int(port) if port else default_port


@dataclass(frozen=True)
class AgentConfig:
    http_addr: str = DEFAULT_HTTP_ADDR
    dns_addr: str = DEFAULT_DNS_ADDR  # "" disables the DNS server
    data_dir: str = "roost-data"
    store: str = "sqlite"  # sqlite | sqlite:///path | memory | etcd://host:port[,host:port]
    node_name: str = field(default_factory=lambda: socket.gethostname().split(".")[0] or "roost")
    node_address: str = "127.0.0.1"
    datacenter: str = "dc1"
    log_level: str = "info"
    max_body: int = 1024 * 1024
    # DNS
    domain: str = "consul."
    alt_domain: str = ""
    dns_only_passing: bool = False
    dns_service_ttl: int = 0
    dns_node_ttl: int = 0
    dns_negative_ttl: int = 0
    dns_recursors: tuple[str, ...] = ()
    k8s_zone: str = ""  # e.g. "cluster.local"; "" turns Kubernetes-style names off
    k8s_namespace: str = "default"
    # Health checks
    check_allow_cidrs: tuple[str, ...] = ()  # empty: any address, as Consul
    enable_script_checks: bool = False
    flap_threshold: int = 5  # status flips within flap_window that mark a check flapping
    flap_window: float = 60.0
    # etcd store
    etcd_lease_ttl: float = 15.0
    etcd_ca_file: str = ""
    etcd_cert_file: str = ""
    etcd_key_file: str = ""
    etcd_username: str = ""
    etcd_password: str = ""
    etcd_prefix: str = ""
