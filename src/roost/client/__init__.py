"""roost's client library: call services by name.

::

    from roost.client import ServiceClient, create_discovery

    discovery = create_discovery(policy="p2c_ewma")   # from ROOST_HTTP_ADDR, ETCD_ENDPOINTS, ...
    async with ServiceClient(discovery) as client:
        response = await client.get("payment-service", "/api/process")

This package imports nothing from the agent side (store, catalog, api, health runner), so a service
can install and use it on its own.
"""

from roost.client.balance import (
    LeastOutstanding,
    PeakEwma,
    Policy,
    RandomPolicy,
    RoundRobin,
    Weighted,
    make_policy,
)
from roost.client.breaker import BreakerConfig, Breakers, BreakerState, BreakerStats, CircuitBreaker
from roost.client.discovery import Discovery, SyncDiscovery
from roost.client.factory import create_discovery, create_strategy
from roost.client.http import RoostTransport, ServiceClient, SyncServiceClient
from roost.client.instance import Change, ChangeKind, Instance
from roost.client.registration import AgentRegistration, EtcdRegistration
from roost.client.retry import Backoff, RetryBudget
from roost.client.strategies import (
    ChainStrategy,
    ConsulStrategy,
    DnsStrategy,
    EtcdStrategy,
    KubernetesStrategy,
    StaticStrategy,
    Strategy,
)
from roost.errors import NoHealthyInstance, Unavailable

__all__ = [
    "AgentRegistration",
    "Backoff",
    "BreakerConfig",
    "BreakerState",
    "BreakerStats",
    "Breakers",
    "ChainStrategy",
    "Change",
    "ChangeKind",
    "CircuitBreaker",
    "ConsulStrategy",
    "Discovery",
    "DnsStrategy",
    "EtcdRegistration",
    "EtcdStrategy",
    "Instance",
    "KubernetesStrategy",
    "LeastOutstanding",
    "NoHealthyInstance",
    "PeakEwma",
    "Policy",
    "RandomPolicy",
    "RetryBudget",
    "RoostTransport",
    "RoundRobin",
    "ServiceClient",
    "StaticStrategy",
    "Strategy",
    "SyncDiscovery",
    "SyncServiceClient",
    "Unavailable",
    "Weighted",
    "create_discovery",
    "create_strategy",
    "make_policy",
]
