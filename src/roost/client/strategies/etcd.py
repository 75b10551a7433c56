"""etcd v3: instances as JSON under ``/services/<name>/<id>``, followed by a prefix watch.

The layout is the one the common etcd3 Python examples write (``{"host": ..., "port": ...}`` plus
any other fields, which become :attr:`Instance.meta`; ``weight`` and ``tags`` are honoured when
present). Records written by roost's own etcd store (``address`` beside ``host``) read the same.

This talks to etcd's v3 JSON gateway (``/v3/kv/range``, ``/v3/watch``, ``/v3/lease/*``; keys and
values base64) over aiohttp rather than through an etcd client library: python-etcd3 pins old
protobuf/grpc generated code that fails to import with current protobuf releases (the
"Descriptors cannot be created directly" error) and has had no release since 2020, and the other
asyncio etcd clients bring grpcio and protobuf pins. The gateway is part of every etcd 3.4+ server
and needs nothing beyond the HTTP client the library already has.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp

from roost.client.instance import Instance
from roost.client.tls import default_ssl_context
from roost.errors import Unavailable


def b64(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


def prefix_end(prefix: bytes) -> bytes:
    """The ``range_end`` that selects every key starting with ``prefix`` (etcd's GetPrefixRangeEnd)."""
    end = bytearray(prefix)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\0"


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
    """A small async client for etcd's v3 JSON gateway, tried endpoint by endpoint (aiohttp, for the
    same reason as :class:`~roost.client.strategies.consul.ConsulStrategy`)."""

    def __init__(self, endpoints: Sequence[str] | str, *, timeout: float = 5.0) -> None:
        if isinstance(endpoints, str):
            endpoints = endpoints.split(",")
        self.endpoints = [e.strip().rstrip("/") for e in endpoints if e.strip()]
        self.endpoints = [e if "://" in e else "http://" + e for e in self.endpoints]
        if not self.endpoints:
            raise ValueError("no etcd endpoint given")
        random.shuffle(self.endpoints)  # spread clients over the cluster
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=timeout)
        self._stream_timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout)
        self._pool: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._pool is None or self._pool.closed:
            self._pool = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, ssl=default_ssl_context())
            )
        return self._pool

    async def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        last: Exception | None = None
        for i, endpoint in enumerate(list(self.endpoints)):
            try:
                async with self._http().post(endpoint + path, json=body, timeout=self._timeout) as resp:
                    status, raw = resp.status, await resp.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                last = exc
                continue
            if status != 200:
                raise Unavailable(f"etcd at {endpoint}{path} answered {status}: {raw[:200]!r}")
            if i:  # remember the endpoint that worked
                self.endpoints.insert(0, self.endpoints.pop(i))
            data: dict[str, Any] = json.loads(raw)
            return data
        raise Unavailable(f"no etcd endpoint answered ({', '.join(self.endpoints)}): {last!r}")

    async def range_prefix(self, prefix: str) -> tuple[int, list[tuple[bytes, bytes]]]:
        """Every key under ``prefix``: ``(revision, [(key, value), ...])``."""
        raw = prefix.encode()
        data = await self.call("/v3/kv/range", {"key": b64(raw), "range_end": b64(prefix_end(raw))})
        revision = int(data.get("header", {}).get("revision", 0))
        kvs = [(unb64(kv["key"]), unb64(kv.get("value", ""))) for kv in data.get("kvs", ())]
        return revision, kvs

    async def watch_prefix(self, prefix: str, start_revision: int) -> AsyncIterator[list[dict[str, Any]]]:
        """Yield the event lists of a prefix watch from ``start_revision`` until the stream ends."""
        raw = prefix.encode()
        body = {
            "create_request": {
                "key": b64(raw),
                "range_end": b64(prefix_end(raw)),
                "start_revision": start_revision,
                "progress_notify": True,
            }
        }
        endpoint = self.endpoints[0]
        try:
            async with self._http().post(
                endpoint + "/v3/watch", json=body, timeout=self._stream_timeout
            ) as resp:
                if resp.status != 200:
                    raise Unavailable(f"etcd watch at {endpoint} answered {resp.status}")
                async for line in resp.content:
                    if not line.strip():
                        continue
                    msg = json.loads(line)
                    if "error" in msg:
                        raise Unavailable(f"etcd watch failed: {msg['error']}")
                    result = msg.get("result", {})
                    if result.get("canceled") or result.get("compact_revision"):
                        raise Unavailable(f"etcd watch cancelled: {result.get('cancel_reason', 'compacted')}")
                    yield result.get("events") or []
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:  # ValueError: a bad or huge line
            raise Unavailable(f"etcd watch at {endpoint} broke: {exc!r}") from exc

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
        if self._pool is not None:
            await self._pool.close()


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
