"""``create_discovery()``: a Discovery configured from the environment.

The primary strategy is the first that applies:

1. Kubernetes (a service-account namespace file exists): cluster DNS in that namespace;
2. ``ROOST_HTTP_ADDR`` / ``CONSUL_HTTP_ADDR``: roost or Consul over HTTP;
3. ``ETCD_ENDPOINTS``: etcd under ``ROOST_ETCD_PREFIX`` (``/services``);
4. otherwise a local agent on 127.0.0.1:8500.

``ROOST_DNS_SERVERS`` adds a DNS fallback and ``ROOST_STATIC_SERVICES`` a static one
(``web=10.0.0.1:80,10.0.0.2:80;api=10.0.0.3:9000``), in that order, through a :class:`ChainStrategy`.
"""

from __future__ import annotations

from typing import Any

from roost.client.discovery import Discovery
from roost.client.strategies.base import Strategy
from roost.client.strategies.chain import ChainStrategy
from roost.client.strategies.consul import ConsulStrategy
from roost.client.strategies.dns import DnsStrategy
from roost.client.strategies.etcd import EtcdStrategy
from roost.client.strategies.k8s import KubernetesStrategy
from roost.client.strategies.static import StaticStrategy
from roost.config import DEFAULT_HTTP_ADDR, ClientConfig


def parse_static(text: str) -> dict[str, list[str]]:
    """``"web=10.0.0.1:80,10.0.0.2:80;api=10.0.0.3:9000"`` -> ``{"web": [...], "api": [...]}``."""
    out: dict[str, list[str]] = {}
    for part in text.split(";"):
        name, sep, addrs = part.partition("=")
        if not sep or not name.strip():
            continue
        out[name.strip()] = [a.strip() for a in addrs.split(",") if a.strip()]
    return out


def create_strategy(config: ClientConfig | None = None) -> Strategy:
    """The strategy (or chain) the configuration asks for; see the module docstring."""
    config = config or ClientConfig.from_env()
    chain: list[Strategy] = []
    if config.in_kubernetes:
        chain.append(KubernetesStrategy(config.dns_servers or None, namespace=config.k8s_namespace))
    elif config.http_addr:
        chain.append(ConsulStrategy(config.http_addr, token=config.token))
    elif config.etcd_endpoints:
        chain.append(EtcdStrategy(config.etcd_endpoints, prefix=config.etcd_prefix))
    else:
        chain.append(ConsulStrategy(DEFAULT_HTTP_ADDR, token=config.token))
    if config.dns_servers and not config.in_kubernetes:
        domain = config.dns_domain.strip(".")
        name = f"{{service}}.service.{domain}"
        chain.append(DnsStrategy(config.dns_servers, srv_name=name, a_name=name))
    if config.static:
        chain.append(StaticStrategy(parse_static(config.static)))
    return chain[0] if len(chain) == 1 else ChainStrategy(chain)


def create_discovery(config: ClientConfig | None = None, **kwargs: Any) -> Discovery:
    """A :class:`Discovery` over :func:`create_strategy`; ``kwargs`` go to Discovery
    (the policy and ``max_stale`` default to ``ROOST_LB_POLICY`` and ``ROOST_MAX_STALE``)."""
    config = config or ClientConfig.from_env()
    kwargs.setdefault("policy", config.policy)
    kwargs.setdefault("max_stale", config.max_stale)
    return Discovery(create_strategy(config), **kwargs)
