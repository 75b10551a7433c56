"""Discovery backends: one interface (:class:`Strategy`), one module per backend."""

from roost.client.strategies.base import Strategy
from roost.client.strategies.chain import ChainStrategy
from roost.client.strategies.consul import ConsulStrategy
from roost.client.strategies.dns import DnsStrategy
from roost.client.strategies.etcd import EtcdStrategy
from roost.client.strategies.k8s import KubernetesStrategy
from roost.client.strategies.static import StaticStrategy

__all__ = [
    "ChainStrategy",
    "ConsulStrategy",
    "DnsStrategy",
    "EtcdStrategy",
    "KubernetesStrategy",
    "StaticStrategy",
    "Strategy",
]
