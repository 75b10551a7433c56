"""The shared store: etcd v3, so several agents serve one catalog.

Key layout (``P`` is ``--etcd-prefix``, empty by default)::

    P/services/<name>/<id>   one instance: JSON with "host" and "port" plus roost's fields
    P/roost/checks/<id>      one check: its definition, status and output

Instances live where the well-known etcd discovery examples put them, so a plain client that writes
``/services/web/web-1`` = ``{"host": "10.0.0.5", "port": 8080}`` with a lease is discovered by every
agent, and plain clients can read roost's registrations. The two subtrees sit at the ends of one key
range (``P/roost/`` up to the end of ``P/services/``) which one watch and one range read cover, so a
registration that writes an instance and its checks in one transaction reaches every agent as one
revision. Keys inside that range that are not roost's are ignored.

Index: etcd's revision. A write returns the revision of its transaction; the catalog waits until its
watch has delivered that revision, so a client reads its own write on the agent it wrote to, and
``X-Consul-Index`` means the same on every agent.

Ownership: each agent holds one lease (``--etcd-lease-ttl``) and attaches it to every key it puts.
When the agent dies the lease expires and etcd deletes its keys; the watch removes them from every
catalog. If the agent finds its lease gone (a partition longer than the TTL), it grants a new one
and puts its own keys back. On start it adopts the keys a previous run of the same node left
behind (services whose ``owner`` is this node, and their checks), so a restart keeps them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import orjson

from roost.config import AgentConfig
from roost.errors import Conflict, StoreUnavailable, ValidationError
from roost.etcd_gateway import (
    NOT_FOUND,
    EtcdError,
    EtcdUnreachable,
    Gateway,
    b64,
    prefix_end,
    unb64,
)
from roost.store.protocol import Change, Compacted

log = logging.getLogger("roost.store.etcd")

SERVICES = "services/"
_MAX_TXN_OPS = 128  # etcd's default --max-txn-ops
_Snapshot = dict[str, tuple[int, int, bytes]]


def parse_endpoints(spec: str) -> list[str]:
    """``etcd://h1:2379,h2:2379`` -> ``["http://h1:2379", "http://h2:2379"]`` (``etcds://``: https)."""
    scheme, sep, rest = spec.partition("://")
    if not sep or scheme not in ("etcd", "etcds"):
        raise ValidationError(f"not an etcd store address: {spec!r}", field="store")
    http = "https" if scheme == "etcds" else "http"
    out = []
    for part in rest.strip("/").split(","):
        part = part.strip()
        if not part:
            continue
        host = urlsplit(f"//{part}")
        if not host.hostname:
            raise ValidationError(f"bad etcd endpoint {part!r} in {spec!r}", field="store")
        out.append(f"{http}://{part}" if host.port else f"{http}://{part}:2379")
    if not out:
        raise ValidationError(f"no etcd endpoint in {spec!r}", field="store")
    return out


class KeyMap:
    """roost's store keys <-> etcd keys."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix.rstrip("/")
        self.services = f"{self.prefix}/services/"
        self.roost = f"{self.prefix}/roost/"
        # One range covers both subtrees: "/roost/" sorts before "/services/".
        self.start = self.roost
        self.end = prefix_end(self.services).decode()

    def to_etcd(self, key: str) -> str:
        if key.startswith(SERVICES):
            return self.services + key[len(SERVICES) :]
        return self.roost + key

    def from_etcd(self, key: str) -> str | None:
        if key.startswith(self.services):
            return SERVICES + key[len(self.services) :]
        if key.startswith(self.roost):
            return key[len(self.roost) :]
        return None  # a foreign key inside our range


class EtcdStore:
    name = "etcd"

    def __init__(
        self,
        gateway: Gateway,
        *,
        node: str,
        lease_ttl: float = 15.0,
        prefix: str = "",
    ) -> None:
        self.gateway = gateway
        self.node = node
        self.keys = KeyMap(prefix)
        self.lease_ttl = max(2, round(lease_ttl))
        self.lease = 0
        self._leases: set[int] = set()  # every lease this agent granted
        self._lease_lock = asyncio.Lock()
        self._heartbeat = min(self.lease_ttl / 3, 1.0)
        self._keeper: asyncio.Task[None] | None = None
        self._watching = False
        self._seen = 0  # highest revision the watch delivered
        # This agent's keys (roost key -> value), to put back if the lease is lost; and the ones
        # deleted while we cannot yet tell a deregistration from an expiry (key -> revision, value).
        self._own: dict[str, bytes] = {}
        self._doubtful: dict[str, tuple[int, bytes]] = {}
        self._queue: collections.deque[tuple[Mapping[str, bytes | None], asyncio.Future[int]]] = (
            collections.deque()
        )
        self._flusher: asyncio.Task[None] | None = None

    @classmethod
    def from_config(cls, config: AgentConfig) -> EtcdStore:
        gateway = Gateway(
            parse_endpoints(config.store.strip()),
            ca_file=config.etcd_ca_file,
            cert_file=config.etcd_cert_file,
            key_file=config.etcd_key_file,
            username=config.etcd_username,
            password=config.etcd_password,
        )
        return cls(gateway, node=config.node_name, lease_ttl=config.etcd_lease_ttl, prefix=config.etcd_prefix)

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        try:
            with self._errors("start"):
                await self._grant()
                await self._adopt()
        except BaseException:
            await self.gateway.aclose()
            raise
        self._keeper = asyncio.create_task(self._keep_alive(), name="roost-etcd-lease")

    async def close(self) -> None:
        # The lease is left to expire rather than revoked: an agent that restarts within the TTL
        # adopts its keys, so a restart does not make its instances blink out of every catalog.
        for task in (self._keeper, self._flusher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._keeper = self._flusher = None
        await self.gateway.aclose()

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except EtcdUnreachable as exc:
            raise StoreUnavailable(
                f"etcd ({self.gateway.where}) is unreachable, could not {doing}: {exc}"
            ) from exc
        except EtcdError as exc:
            raise StoreUnavailable(f"etcd ({self.gateway.where}) refused to {doing}: {exc.message}") from exc

    # -- the Store protocol ------------------------------------------------------------------

    async def apply(
        self, writes: Mapping[str, bytes | None], *, expect: Mapping[str, int] | None = None
    ) -> int:
        if expect:
            resp = await self._send(writes, expect)
            if not resp.get("succeeded"):
                raise Conflict("the entry changed since it was read (compare on its modify index failed)")
            return self._done(writes, resp.get("responses") or [], resp)
        # Group commit: writes that arrive while a transaction is in flight go together in the
        # next one (one etcd round trip and one fsync for many registrations, as SQLite's writer).
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queue.append((writes, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="roost-etcd-writer")
        return await future

    async def _flush(self) -> None:
        while self._queue:
            batch: list[tuple[Mapping[str, bytes | None], asyncio.Future[int]]] = []
            merged: dict[str, bytes | None] = {}
            while self._queue:
                writes, future = self._queue[0]
                # etcd refuses a txn that names one key twice or holds over --max-txn-ops (128).
                if batch and (
                    len(merged) + len(writes) > _MAX_TXN_OPS or not merged.keys().isdisjoint(writes)
                ):
                    break
                self._queue.popleft()
                batch.append((writes, future))
                merged.update(writes)
            try:
                resp = await self._send(merged, None)
            except BaseException as exc:  # including cancellation: no writer is left waiting
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            responses = list(resp.get("responses") or ())
            offset = 0
            for writes, future in batch:
                index = self._done(writes, responses[offset : offset + len(writes)], resp)
                offset += len(writes)
                if not future.done():
                    future.set_result(index)

    async def _send(
        self, writes: Mapping[str, bytes | None], expect: Mapping[str, int] | None
    ) -> dict[str, Any]:
        with self._errors("write; the write may not have happened"):
            lease = self.lease
            try:
                return await self._txn(writes, expect, lease)
            except EtcdError as exc:
                if exc.code != NOT_FOUND or "lease" not in exc.message:
                    raise
                await self._renew(lease)  # our lease expired under us: a new one, then once more
                return await self._txn(writes, expect, self.lease)

    def _done(
        self, writes: Mapping[str, bytes | None], responses: list[dict[str, Any]], resp: dict[str, Any]
    ) -> int:
        """Note the keys we now own; return the index of this caller's part of the transaction."""
        for key, value in writes.items():
            self._doubtful.pop(key, None)
            if value is None:
                self._own.pop(key, None)
            else:
                self._own[key] = value
        for item in responses:
            if "response_put" in item or int(item.get("response_delete_range", {}).get("deleted", 0)):
                return int(resp["header"]["revision"])
        # Nothing was written (deletes of keys already gone): etcd's revision did not move for us,
        # and the one it reports may belong to keys outside our range that no watch of ours will
        # deliver. Report the last revision we have seen instead.
        return self._seen

    async def _txn(
        self, writes: Mapping[str, bytes | None], expect: Mapping[str, int] | None, lease: int
    ) -> dict[str, Any]:
        ops: list[dict[str, Any]] = []
        for key, value in writes.items():
            ekey = b64(self.keys.to_etcd(key))
            if value is None:
                ops.append({"request_delete_range": {"key": ekey}})
            else:
                ops.append({"request_put": {"key": ekey, "value": b64(value), "lease": str(lease)}})
        compare = [
            {"target": "MOD", "result": "EQUAL", "key": b64(self.keys.to_etcd(k)), "mod_revision": str(v)}
            for k, v in (expect or {}).items()
        ]
        body: dict[str, Any] = {"success": ops}
        if compare:
            body["compare"] = compare
        return await self.gateway.call("/v3/kv/txn", body, idempotent=False)

    async def snapshot(self) -> tuple[int, _Snapshot]:
        with self._errors("read the catalog"):
            revision, kvs = await self._range()
        out: _Snapshot = {}
        for kv in kvs:
            key = self.keys.from_etcd(unb64(kv["key"]).decode(errors="replace"))
            if key is not None:
                out[key] = (int(kv["create_revision"]), int(kv["mod_revision"]), unb64(kv.get("value", "")))
        self._seen = max(self._seen, revision)
        return revision, out

    async def _range(self) -> tuple[int, list[dict[str, Any]]]:
        resp = await self.gateway.call(
            "/v3/kv/range", {"key": b64(self.keys.start), "range_end": b64(self.keys.end)}
        )
        return int(resp["header"]["revision"]), list(resp.get("kvs") or ())

    async def follow(self, since: int) -> AsyncIterator[list[Change]]:
        """One watch from `since` + 1; after a disconnect it resumes from the last revision seen."""
        last = since
        backoff = 0.05
        while True:
            body = {
                "create_request": {
                    "key": b64(self.keys.start),
                    "range_end": b64(self.keys.end),
                    "start_revision": str(last + 1),
                }
            }
            try:
                async with self.gateway.stream("/v3/watch", body) as responses:
                    async for message in responses:
                        result = message.get("result") or {}
                        if int(result.get("compact_revision", 0)):
                            raise Compacted(
                                f"etcd compacted its history up to {result['compact_revision']}; "
                                f"revision {last + 1} is gone"
                            )
                        if result.get("canceled"):
                            break  # e.g. the member lost its leader: reconnect
                        if result.get("created"):
                            self._watching = True
                            backoff = 0.05
                        events = result.get("events")
                        if not events:
                            continue
                        batch = self._changes(events)
                        last = max(last, int(events[-1]["kv"]["mod_revision"]))
                        if batch:
                            # Only revisions the catalog will see: a no-op write reports this one.
                            self._seen = max(self._seen, batch[-1].index)
                            yield batch
            except (EtcdUnreachable, EtcdError, KeyError, ValueError) as exc:
                log.warning("etcd watch interrupted (%s); resuming from revision %d", exc, last + 1)
            finally:
                self._watching = False
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 1.0)
            self.gateway.rotate()

    def _changes(self, events: Iterable[dict[str, Any]]) -> list[Change]:
        out = []
        for event in events:
            kv = event["kv"]
            key = self.keys.from_etcd(unb64(kv["key"]).decode(errors="replace"))
            if key is None:
                continue
            revision = int(kv["mod_revision"])
            if event.get("type") == "DELETE":
                out.append(Change(revision, key, None))
                owned = self._own.pop(key, None)
                if owned is not None:
                    self._doubtful[key] = (revision, owned)
            else:
                out.append(Change(revision, key, unb64(kv.get("value", ""))))
                if key in self._own and int(kv.get("lease", 0)) not in self._leases:
                    del self._own[key]  # someone else wrote it: no longer ours to keep alive
        return out

    def connected(self) -> tuple[bool, float]:
        since = time.monotonic() - self.gateway.last_contact
        ok = self._watching and since < 3 * self._heartbeat + 0.5
        return ok, (0.0 if ok else since)

    # -- the lease ---------------------------------------------------------------------------

    async def _grant(self) -> None:
        resp = await self.gateway.call("/v3/lease/grant", {"TTL": str(self.lease_ttl)})
        self.lease = int(resp["ID"])
        self._leases.add(self.lease)
        log.info("etcd lease %x granted (TTL %ss)", self.lease, self.lease_ttl)

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat)
            lease = self.lease
            try:
                resp = await self.gateway.call(
                    "/v3/lease/keepalive", {"ID": str(lease)}, timeout=max(self._heartbeat, 0.5)
                )
                result = resp.get("result") or resp
                if int(result.get("TTL", 0)) <= 0:
                    await self._renew(lease)
                else:
                    # The lease was alive at this revision: deletes of our keys up to it were
                    # deregistrations, not expiry.
                    alive_at = int(result.get("header", {}).get("revision", 0))
                    for key in [k for k, (rev, _) in self._doubtful.items() if rev <= alive_at]:
                        del self._doubtful[key]
            except (EtcdUnreachable, EtcdError) as exc:
                log.debug("etcd keepalive failed: %s", exc)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("etcd keepalive failed")

    async def _renew(self, lost: int) -> None:
        """Our lease `lost` is gone: grant a new one and put our keys back (once per loss)."""
        async with self._lease_lock:
            if self.lease != lost:
                return  # another caller already renewed it
            log.warning("etcd lease %x expired; granting a new one and re-registering", lost)
            await self._grant()
            keys = {**{k: v for k, (_, v) in self._doubtful.items()}, **self._own}
            self._doubtful.clear()
            for key, value in keys.items():
                await self._put_if_absent(key, value)

    async def _put_if_absent(self, key: str, value: bytes) -> None:
        ekey = b64(self.keys.to_etcd(key))
        resp = await self.gateway.call(
            "/v3/kv/txn",
            {
                "compare": [{"target": "CREATE", "result": "EQUAL", "key": ekey, "create_revision": "0"}],
                "success": [{"request_put": {"key": ekey, "value": b64(value), "lease": str(self.lease)}}],
            },
            idempotent=False,
        )
        if resp.get("succeeded"):
            self._own[key] = value
        else:
            self._own.pop(key, None)  # someone registered it meanwhile: theirs now

    async def _adopt(self) -> None:
        """Take over the keys an earlier run of this node left behind, under our new lease."""
        _, kvs = await self._range()
        mine: set[str] = set()
        found: list[tuple[str, int, bytes, dict[str, Any]]] = []
        for kv in kvs:
            key = self.keys.from_etcd(unb64(kv["key"]).decode(errors="replace"))
            if key is None:
                continue
            try:
                data = orjson.loads(unb64(kv.get("value", "")))
            except orjson.JSONDecodeError:
                continue
            if not isinstance(data, dict):
                continue
            found.append((key, int(kv["mod_revision"]), unb64(kv.get("value", "")), data))
            if key.startswith(SERVICES) and data.get("owner") == self.node:
                mine.add(key.rpartition("/")[2])
        for key, revision, value, data in found:
            definition = data.get("definition")
            service_id = definition.get("service_id", "") if isinstance(definition, dict) else None
            if (key.startswith(SERVICES) and data.get("owner") == self.node) or (
                not key.startswith(SERVICES) and service_id in mine
            ):
                ekey = b64(self.keys.to_etcd(key))
                resp = await self.gateway.call(
                    "/v3/kv/txn",
                    {
                        "compare": [
                            {"target": "MOD", "result": "EQUAL", "key": ekey, "mod_revision": str(revision)}
                        ],
                        "success": [
                            {"request_put": {"key": ekey, "value": b64(value), "lease": str(self.lease)}}
                        ],
                    },
                    idempotent=False,
                )
                if resp.get("succeeded"):
                    self._own[key] = value
        if self._own:
            log.info("adopted %d keys of node %s from an earlier run", len(self._own), self.node)
