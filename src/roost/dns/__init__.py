"""The DNS interface: Consul-style names (and optional Kubernetes-style ones) answered from the catalog."""

from roost.dns.server import DnsServer

__all__ = ["DnsServer"]
