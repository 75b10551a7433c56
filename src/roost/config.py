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


def split_host_port(addr: str, default_port: int, *, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """'127.0.0.1:8500', '[::1]:8500', 'localhost', ':8500' -> (host, port). The one parser of
    host:port text in roost (listen and agent addresses, resolvers, static instance lists)."""
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
    return host or default_host, int(port) if port else default_port


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
    dns_service_ttls: tuple[tuple[str, int], ...] = ()  # per name; "api-*" matches a prefix (Consul)
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


@dataclass(frozen=True)
class GatewayConfig:
    """`roost gateway`: listen address, agent, worker count, limits and defaults for every route."""

    listen: str = DEFAULT_GATEWAY_ADDR
    agent_addr: str = DEFAULT_HTTP_ADDR
    workers: int = 1
    domain: str = "roost"  # Host `<service>.roost` routes to <service>; "" turns host routing off
    strip_prefix: bool = True  # `/<service>/x` is forwarded as `/x`
    default_routes: bool = True  # every catalog service answers on `/<service>/`
    access_log: str = "-"  # "-" stdout, "" off, or a file path
    # Upstream defaults (a route may override them)
    connect_timeout: float = 2.0
    read_timeout: float = 30.0
    total_timeout: float = 300.0  # a whole exchange, body included; 0 turns it off
    retries: int = 2
    policy: str = "round_robin"
    # Outlier ejection, as Envoy's outlier detection
    consecutive_failures: int = 5
    base_ejection: float = 30.0
    max_ejection: float = 300.0
    max_ejection_percent: int = 50
    # Limits against abuse
    max_connections: int = 10_000
    max_request_line: int = 8192
    max_header_bytes: int = 32_768
    max_headers: int = 100
    header_timeout: float = 10.0  # the whole request head must arrive within this (slowloris)
    body_timeout: float = 30.0  # longest pause between request body bytes
    idle_timeout: float = 60.0  # keep-alive connection with no request


K8S_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def kubernetes_namespace(path: str = K8S_NAMESPACE_FILE) -> str:
    """The pod's namespace: the service-account file, then ``NAMESPACE``, then ``default``."""
    try:
        with open(path, encoding="utf-8") as f:
            if text := f.read().strip():
                return text
    except OSError:
        pass
    return env("NAMESPACE") or "default"


@dataclass(frozen=True)
class ClientConfig:
    """What `roost.client.create_discovery()` reads from the environment (see `from_env`)."""

    in_kubernetes: bool = False  # a service-account namespace file exists
    k8s_namespace: str = "default"
    http_addr: str = ""  # ROOST_HTTP_ADDR, then CONSUL_HTTP_ADDR
    token: str = ""  # ROOST_HTTP_TOKEN, then CONSUL_HTTP_TOKEN
    etcd_endpoints: tuple[str, ...] = ()  # ETCD_ENDPOINTS (comma-separated)
    etcd_prefix: str = "/services"  # ROOST_ETCD_PREFIX
    dns_servers: tuple[str, ...] = ()  # ROOST_DNS_SERVERS: a DNS fallback ("ip:port,...")
    dns_domain: str = "consul"  # ROOST_DNS_DOMAIN
    static: str = ""  # ROOST_STATIC_SERVICES: "web=10.0.0.1:80,10.0.0.2:80;api=..." as the last fallback
    policy: str = "round_robin"  # ROOST_LB_POLICY
    max_stale: float = 300.0  # ROOST_MAX_STALE (seconds)

    @classmethod
    def from_env(cls, namespace_file: str = K8S_NAMESPACE_FILE) -> ClientConfig:
        return cls(
            in_kubernetes=os.path.exists(namespace_file),
            k8s_namespace=kubernetes_namespace(namespace_file),
            http_addr=env("ROOST_HTTP_ADDR") or env("CONSUL_HTTP_ADDR"),
            token=env("ROOST_HTTP_TOKEN") or env("CONSUL_HTTP_TOKEN"),
            etcd_endpoints=env_list("ETCD_ENDPOINTS"),
            etcd_prefix=env("ROOST_ETCD_PREFIX", "/services"),
            dns_servers=env_list("ROOST_DNS_SERVERS"),
            dns_domain=env("ROOST_DNS_DOMAIN", "consul"),
            static=env("ROOST_STATIC_SERVICES"),
            policy=env("ROOST_LB_POLICY", "round_robin"),
            max_stale=float(env("ROOST_MAX_STALE", "300")),
        )
