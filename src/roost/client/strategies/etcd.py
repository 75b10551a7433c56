"""etcd v3: instances as JSON under ``/services/<name>/<id>``, followed by a prefix watch.

The layout is the one the common etcd3 Python examples write (``{"host": ..., "port": ...}`` plus
any other fields, which become :attr:`Instance.meta`; ``weight`` and ``tags`` are honoured when
present). Records written by roost's own etcd store (``address`` beside ``host``) read the same.

This talks to etcd's v3 JSON gateway (``/v3/kv/range``, ``/v3/watch``, ``/v3/lease/*``; keys and
values base64) through roost's own small client for it (:mod:`roost.etcd_gateway`, shared with the
agent's etcd store) rather than through an etcd client library: python-etcd3 pins old
protobuf/grpc generated code that fails to import with current protobuf releases (the
"Descriptors cannot be created directly" error) and has had no release since 2020, and the other
asyncio etcd clients bring grpcio and protobuf pins. The gateway is part of every etcd 3.4+ server
and needs nothing beyond the HTTP client the library already has.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Sequence
from typing import Any

from roost.client.instance import Instance
from roost.errors import Unavailable
from roost.etcd_gateway import EtcdError, EtcdUnreachable, Gateway, b64, prefix_end, unb64


def parse_record(service: str, key: bytes, value: bytes) -> Instance | None:
    """One etcd value -> an Instance; ``None`` for values that are not an instance record."""
    try:
        data = json.loads(value)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    host = data.get("host") or data.get("address") or data.get("Address")
    port = data.get("port") or data.get("Port")
    if not host or not port:
        return None
    iid = key.decode(errors="replace").rsplit("/", 1)[-1]
    tags = data.get("tags") or ()
    weight = data.get("weight")
    if weight is None and isinstance(data.get("weights"), dict):
        weight = data["weights"].get("passing")
    skip = {"host", "address", "port", "tags", "weight", "weights", "id", "name", "meta"}
    meta = {str(k): str(v) for k, v in data.items() if k not in skip and not isinstance(v, dict | list)}
    if isinstance(data.get("meta"), dict):
        meta.update({str(k): str(v) for k, v in data["meta"].items()})
    return Instance(
        service=service,
        id=iid,
        address=str(host),
        port=int(port),
        weight=max(int(weight), 0) if weight is not None else 1,
        tags=tuple(str(t) for t in tags) if isinstance(tags, list) else (),
        meta=meta,
    )


class EtcdGateway:
    """The etcd calls the client library makes, over the shared JSON-gateway client
    (:mod:`roost.etcd_gateway`: pooled aiohttp, failover across endpoints), with etcd's errors
    turned into :class:`~roost.errors.Unavailable`."""

    def __init__(self, endpoints: Sequence[str] | str, *, timeout: float = 5.0) -> None:
        if isinstance(endpoints, str):
            endpoints = endpoints.split(",")
        urls = [e.strip().rstrip("/") for e in endpoints if e.strip()]
        urls = [e if "://" in e else "http://" + e for e in urls]
        if not urls:
            raise ValueError("no etcd endpoint given")
        random.shuffle(urls)  # spread clients over the cluster
        self.gateway = Gateway(urls, timeout=timeout, connect_timeout=min(timeout, 1.0))

    @property
    def endpoints(self) -> list[str]:
        return self.gateway.endpoints

    async def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            return await self.gateway.call(path, body)
        except (EtcdError, EtcdUnreachable) as exc:
            raise Unavailable(f"etcd {path}: {exc}") from exc

    async def range_prefix(self, prefix: str) -> tuple[int, list[tuple[bytes, bytes]]]:
        """Every key under ``prefix``: ``(revision, [(key, value), ...])``."""
        data = await self.call("/v3/kv/range", {"key": b64(prefix), "range_end": b64(prefix_end(prefix))})
        revision = int(data.get("header", {}).get("revision", 0))
        kvs = [(unb64(kv["key"]), unb64(kv.get("value", ""))) for kv in data.get("kvs", ())]
        return revision, kvs

    async def watch_prefix(self, prefix: str, start_revision: int) -> AsyncIterator[list[dict[str, Any]]]:
        """Yield the event lists of a prefix watch from ``start_revision`` until the stream ends."""
        body = {
            "create_request": {
                "key": b64(prefix),
                "range_end": b64(prefix_end(prefix)),
                "start_revision": start_revision,
                "progress_notify": True,
            }
        }
        try:
            async with self.gateway.stream("/v3/watch", body) as messages:
                async for msg in messages:
                    result = msg.get("result", {})
                    if result.get("canceled") or result.get("compact_revision"):
                        reason = result.get("cancel_reason", "compacted")
                        raise Unavailable(f"etcd watch cancelled: {reason}")
                    yield result.get("events") or []
        except (EtcdError, EtcdUnreachable) as exc:
            self.gateway.rotate()
            raise Unavailable(f"etcd watch broke: {exc}") from exc
        self.gateway.rotate()

    async def grant(self, ttl: int) -> int:
        data = await self.call("/v3/lease/grant", {"TTL": ttl})
        return int(data["ID"])

    async def keepalive(self, lease: int) -> int:
        """Refresh ``lease`` once; returns the TTL left (0: the lease is gone)."""
        data = await self.call("/v3/lease/keepalive", {"ID": lease})
        return int(data.get("result", {}).get("TTL", 0))

    async def revoke(self, lease: int) -> None:
        await self.call("/v3/lease/revoke", {"ID": lease})

    async def put(self, key: str, value: bytes | str, lease: int = 0) -> None:
        body: dict[str, Any] = {"key": b64(key), "value": b64(value)}
        if lease:
            body["lease"] = lease
        await self.call("/v3/kv/put", body)

    async def delete(self, key: str) -> None:
        await self.call("/v3/kv/deleterange", {"key": b64(key)})

    async def aclose(self) -> None:
        await self.gateway.aclose()


class EtcdStrategy:
    """Follow services stored in etcd under ``<prefix>/<name>/<id>``.

    Args:
        endpoints: ``host:port`` or URLs, comma-separated or a list (``ETCD_ENDPOINTS``).
        prefix: the directory of services (``/services``).
    """

    name = "etcd"

    def __init__(
        self, endpoints: Sequence[str] | str, *, prefix: str = "/services", timeout: float = 5.0
    ) -> None:
        self.etcd = EtcdGateway(endpoints, timeout=timeout)
        self.prefix = "/" + prefix.strip("/")

    def service_prefix(self, service: str) -> str:
        return f"{self.prefix}/{service}/"

    async def updates(self, service: str) -> AsyncIterator[tuple[Instance, ...]]:
        prefix = self.service_prefix(service)
        revision, kvs = await self.etcd.range_prefix(prefix)
        records: dict[bytes, Instance] = {}
        for key, value in kvs:
            if inst := parse_record(service, key, value):
                records[key] = inst
        last = tuple(sorted(records.values(), key=lambda i: i.id))
        yield last
        async for events in self.etcd.watch_prefix(prefix, revision + 1):
            for event in events:
                kv = event.get("kv", {})
                key = unb64(kv.get("key", ""))
                if event.get("type") == "DELETE":
                    records.pop(key, None)
                elif inst := parse_record(service, key, unb64(kv.get("value", ""))):
                    records[key] = inst
                else:
                    records.pop(key, None)
            now = tuple(sorted(records.values(), key=lambda i: i.id))
            if now != last:
                last = now
                yield now
        raise Unavailable("etcd watch stream ended")

    async def aclose(self) -> None:
        await self.etcd.aclose()
