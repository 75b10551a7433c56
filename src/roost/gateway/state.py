"""What one gateway worker knows: the route table, the service pools, metrics, the access log, its clock."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import orjson

from roost.client.breaker import BreakerConfig
from roost.client.instance import Instance
from roost.config import GatewayConfig
from roost.gateway.accesslog import AccessLog
from roost.gateway.metrics import Metrics
from roost.gateway.outlier import EjectionPolicy
from roost.gateway.routing import Route, RouteTable, registry_routes
from roost.gateway.upstream import ServicePool, Upstream

if TYPE_CHECKING:
    from roost.gateway.exchange import Exchange
    from roost.gateway.proxy import ClientConn

SWEEP_EVERY = 0.1  # seconds between timeout sweeps (the resolution of every gateway timeout)


class GatewayState:
    def __init__(
        self, config: GatewayConfig, routes: Sequence[Route] = (), *, worker: int = 0, share_dir: str = ""
    ) -> None:
        self.config = config
        self.explicit = tuple(routes)
        self.match_headers = any(r.headers for r in self.explicit)
        self.table = RouteTable.build(
            self.explicit,
            (),
            (),
            domain=config.domain,
            default_routes=config.default_routes,
            strip_prefix=config.strip_prefix,
        )
        self.pools: dict[str, ServicePool] = {}
        self.ejection = EjectionPolicy(
            config.consecutive_failures,
            config.base_ejection,
            config.max_ejection,
            config.max_ejection_percent,
        )
        # The breaker opens on the error rate over a window; consecutive failures are the outlier
        # detector's job (it also caps the share of instances out).
        self.breaker = BreakerConfig(
            failure_threshold=max(config.consecutive_failures * 4, 20),
            open_timeout=config.base_ejection,
            error_rate=0.5,
            min_requests=20,
        )
        self.metrics = Metrics(share_dir, worker)
        self.log = AccessLog(config.access_log)
        self.conns: set[ClientConn] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.now = time.monotonic()
        self.worker = worker
        self.index = 0
        self._rid_prefix = os.urandom(4).hex().encode() + b"-"
        self._rid = 0
        self._ticks = 0
        self._sweeper: asyncio.TimerHandle | None = None

    # -- catalog -------------------------------------------------------------------------------
    def set_service(self, name: str, instances: Sequence[Instance]) -> None:
        """A service's instances changed (``instances`` are the passing ones, as the agent reports)."""
        pool = self.pools.get(name)
        if pool is None:
            pool = self.pools[name] = ServicePool(name, self.config.policy, self.ejection, self.breaker)
        removed = pool.update([Upstream(i) for i in instances])
        for up in removed:
            up.close_idle()

    def drop_service(self, name: str) -> None:
        pool = self.pools.pop(name, None)
        if pool is not None:
            for up in pool.upstreams:
                up.close_idle()

    def set_routes(self, services: Iterable[str], opt_ins: Mapping[str, Sequence[Instance]]) -> None:
        """Rebuild the route table from the catalog's services and the tags and meta of all instances."""
        registry: list[Route] = []
        for name in sorted(opt_ins):
            for inst in opt_ins[name]:
                registry.extend(registry_routes(name, inst.tags, inst.meta))
        cfg = self.config
        self.table = RouteTable.build(
            self.explicit,
            registry,
            services,
            domain=cfg.domain,
            default_routes=cfg.default_routes,
            strip_prefix=cfg.strip_prefix,
        )

    # -- per request ---------------------------------------------------------------------------
    def next_request_id(self) -> bytes:
        self._rid += 1
        return self._rid_prefix + b"%x" % self._rid

    def account(self, ex: Exchange, seconds: float) -> None:
        status = ex.status
        if ex.route_name:
            self.metrics.route(ex.route_name).observe(status, seconds)
        if ex.upstream_key:
            self.metrics.upstream(ex.upstream_key).observe(status, seconds)
        log = self.log
        if log.enabled:
            record: dict[str, Any] = {
                "ts": time.time(),
                "id": ex.request_id.decode("latin-1"),
                "client": ex.client.peer.decode(),
                "method": ex.method,
                "host": ex.host.decode("latin-1"),
                "path": ex.url.decode("latin-1"),
                "route": ex.route_name,
                "service": ex.service,
                "upstream": ex.upstream_key,
                "status": status,
                "bytes": ex.bytes_out,
                "ms": round(seconds * 1000, 3),
                "attempts": ex.attempts,
            }
            if ex.error:
                record["error"] = ex.error
            log.write(record)

    def rejected(self, status: int, message: str, peer: bytes) -> None:
        self.metrics.route("_rejected").observe(status, 0.0)
        if self.log.enabled:
            self.log.write(
                {"ts": round(time.time(), 3), "client": peer.decode(), "status": status, "error": message}
            )

    def ejected(self, up: Upstream, seconds: float, times: int) -> None:
        print(
            f"roost gateway: ejected {up.key} ({up.address}) for {seconds:g}s (ejection {times})",
            file=sys.stderr,
            flush=True,
        )

    def local(self, path: str, query: bytes) -> tuple[int, bytes, bytes]:
        """The gateway's own endpoints under ``/_roost/``: (status, content type, body)."""
        if path == "/_roost/metrics":
            data = self.metrics.combined()
            if parse_qs(query.decode("latin-1")).get("format") == ["json"]:
                data["ejected"] = self.ejected_now()
                return 200, b"application/json", orjson.dumps(data)
            return 200, b"text/plain; version=0.0.4", self.metrics.render(data)
        if path == "/_roost/routes":
            return (
                200,
                b"application/json",
                orjson.dumps({"index": self.index, "routes": self.table.describe()}),
            )
        if path == "/_roost/upstreams":
            body = {
                name: [
                    {
                        "id": u.id,
                        "address": u.address,
                        "tags": sorted(u.tags),
                        "state": pool.state(u, self.now),
                        "inflight": u.inflight,
                    }
                    for u in pool.upstreams
                ]
                for name, pool in sorted(self.pools.items())
            }
            return 200, b"application/json", orjson.dumps(body)
        if path == "/_roost/health":
            return 200, b"application/json", b'{"status":"ok"}'
        return 404, b"application/json", b'{"error":"no such gateway endpoint"}'

    def ejected_now(self) -> dict[str, list[str]]:
        return {
            name: pool.outlier.ejected(self.now)
            for name, pool in self.pools.items()
            if pool.outlier.ejected(self.now)
        }

    # -- timers --------------------------------------------------------------------------------
    def start_sweeper(self, loop: asyncio.AbstractEventLoop) -> None:
        def tick() -> None:
            self.now = loop.time()
            for conn in list(self.conns):
                conn.sweep(self.now)
            self._ticks += 1
            if self._ticks % 10 == 0:
                self.metrics.publish()
            self.log.flush()
            self._sweeper = loop.call_later(SWEEP_EVERY, tick)

        self.now = loop.time()
        self._sweeper = loop.call_later(SWEEP_EVERY, tick)

    def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        self.log.close()
