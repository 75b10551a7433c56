"""The fallback chain and the environment-driven factory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from roost.client.discovery import Discovery
from roost.client.factory import create_strategy, parse_static
from roost.client.instance import Instance
from roost.client.strategies.chain import ChainStrategy
from roost.client.strategies.consul import ConsulStrategy
from roost.client.strategies.etcd import EtcdStrategy
from roost.client.strategies.k8s import KubernetesStrategy
from roost.client.strategies.static import StaticStrategy
from roost.config import ClientConfig
from roost.errors import Unavailable


class Down:
    name = "down"

    def __init__(self) -> None:
        self.calls = 0
        self.up: tuple[Instance, ...] | None = None

    async def updates(self, service: str) -> AsyncIterator[tuple[Instance, ...]]:
        self.calls += 1
        if self.up is None:
            raise Unavailable("registry down")
        yield self.up
        await asyncio.Event().wait()

    async def aclose(self) -> None:
        pass


async def test_chain_falls_back_then_returns_to_the_primary() -> None:
    """With the primary down the static fallback answers; once it is back the primary is used again."""
    primary = Down()
    chain = ChainStrategy([primary, StaticStrategy({"web": ["127.0.0.1:9"]})], retry_primary=0.05)
    async with Discovery(chain) as d:
        assert [i.port for i in await d.discover("web")] == [9]
        primary.up = (Instance("web", "p", "127.0.0.1", 1),)
        version = d.version("web")
        await d.wait_for_change("web", version, timeout=2.0)
        assert [i.port for i in await d.discover("web")] == [1]


async def test_chain_raises_when_everything_fails() -> None:
    """When every strategy fails the chain raises Unavailable listing each failure."""
    chain = ChainStrategy([Down(), Down()])
    with pytest.raises(Unavailable, match="every discovery strategy failed"):
        async for _ in chain.updates("web"):
            pass


async def test_fallback_on_empty_moves_on() -> None:
    """With fallback_on_empty an empty primary answer hands over to the next strategy."""
    chain = ChainStrategy(
        [StaticStrategy({}), StaticStrategy({"web": ["127.0.0.1:7"]})], fallback_on_empty=True
    )
    updates = aiter(chain.updates("web"))
    assert [i.port for i in await anext(updates)] == [7]
    await updates.aclose()  # type: ignore[attr-defined]


def test_parse_static() -> None:
    """ROOST_STATIC_SERVICES syntax maps names to address lists."""
    assert parse_static("web=1.1.1.1:80,2.2.2.2:80; api=3.3.3.3:9") == {
        "web": ["1.1.1.1:80", "2.2.2.2:80"],
        "api": ["3.3.3.3:9"],
    }


def test_factory_order() -> None:
    """Kubernetes wins over ROOST_HTTP_ADDR, which wins over ETCD_ENDPOINTS; the default is a local agent."""
    k8s = create_strategy(ClientConfig(in_kubernetes=True, k8s_namespace="shop", http_addr="x:1"))
    assert isinstance(k8s, KubernetesStrategy) and k8s.a_name == "{service}.shop.svc.cluster.local"
    consul = create_strategy(ClientConfig(http_addr="10.0.0.1:8500", etcd_endpoints=("e:2379",)))
    assert isinstance(consul, ConsulStrategy) and consul.base_url == "http://10.0.0.1:8500"
    assert isinstance(create_strategy(ClientConfig(etcd_endpoints=("e:2379",))), EtcdStrategy)
    local = create_strategy(ClientConfig())
    assert isinstance(local, ConsulStrategy) and local.base_url == "http://127.0.0.1:8500"
    chain = create_strategy(ClientConfig(http_addr="a:1", dns_servers=("127.0.0.1:53",), static="web=h:1"))
    assert isinstance(chain, ChainStrategy) and chain.name == "chain(consul,dns,static)"


def test_namespace_from_file_then_env(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """The namespace comes from the service-account file, then NAMESPACE, then default."""
    from pathlib import Path

    path = Path(str(tmp_path)) / "namespace"
    monkeypatch.setenv("NAMESPACE", "from-env")
    assert ClientConfig.from_env(str(path)).k8s_namespace == "from-env"
    assert not ClientConfig.from_env(str(path)).in_kubernetes
    path.write_text("from-file\n")
    config = ClientConfig.from_env(str(path))
    assert config.k8s_namespace == "from-file" and config.in_kubernetes
    monkeypatch.delenv("NAMESPACE")
    path.unlink()
    assert ClientConfig.from_env(str(path)).k8s_namespace == "default"
