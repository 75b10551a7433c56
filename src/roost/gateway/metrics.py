"""Counters per route and per upstream instance, rendered in the Prometheus text format.

Served at ``GET /_roost/metrics`` (``?format=json`` for JSON). With several workers each one writes
its snapshot to a shared directory once a second and the worker that answers sums them all.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

# Upper bounds of the latency histogram buckets, in seconds (the last bucket is +Inf).
BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


@dataclass(slots=True)
class Series:
    requests: int = 0
    classes: list[int] = field(default_factory=lambda: [0] * 6)  # index = status // 100; 0: no response
    buckets: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    seconds: float = 0.0
    failures: int = 0  # connect errors, resets and timeouts
    ejections: int = 0

    def observe(self, status: int, seconds: float) -> None:
        self.requests += 1
        self.classes[min(status // 100, 5)] += 1
        self.buckets[bisect_left(BUCKETS, seconds)] += 1
        self.seconds += seconds

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "classes": self.classes,
            "buckets": self.buckets,
            "seconds": self.seconds,
            "failures": self.failures,
            "ejections": self.ejections,
        }

    def merge(self, data: dict[str, Any]) -> None:
        self.requests += int(data["requests"])
        self.classes = [a + int(b) for a, b in zip(self.classes, data["classes"], strict=True)]
        self.buckets = [a + int(b) for a, b in zip(self.buckets, data["buckets"], strict=True)]
        self.seconds += float(data["seconds"])
        self.failures += int(data["failures"])
        self.ejections += int(data["ejections"])


class Metrics:
    def __init__(self, share_dir: str = "", worker: int = 0) -> None:
        self.routes: dict[str, Series] = {}
        self.upstreams: dict[str, Series] = {}
        self.share_dir = share_dir
        self.worker = worker

    def route(self, name: str) -> Series:
        series = self.routes.get(name)
        if series is None:
            series = self.routes[name] = Series()
        return series

    def upstream(self, key: str) -> Series:
        series = self.upstreams.get(key)
        if series is None:
            series = self.upstreams[key] = Series()
        return series

    def snapshot(self) -> dict[str, Any]:
        return {
            "routes": {k: v.to_json() for k, v in self.routes.items()},
            "upstreams": {k: v.to_json() for k, v in self.upstreams.items()},
        }

    def publish(self) -> None:
        """Write this worker's snapshot where the other workers can read it."""
        if not self.share_dir:
            return
        path = Path(self.share_dir) / f"worker-{self.worker}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(self.snapshot()))
        os.replace(tmp, path)

    def combined(self) -> dict[str, Any]:
        """Every worker's counters summed (this worker's are live, the others' up to a second old)."""
        if not self.share_dir:
            return self.snapshot()
        total = Metrics()
        snapshots = [self.snapshot()]
        for path in Path(self.share_dir).glob("worker-*.json"):
            if path.name == f"worker-{self.worker}.json":
                continue
            try:
                snapshots.append(orjson.loads(path.read_bytes()))
            except (OSError, orjson.JSONDecodeError):
                continue
        for snap in snapshots:
            for name, data in snap["routes"].items():
                total.route(name).merge(data)
            for key, data in snap["upstreams"].items():
                total.upstream(key).merge(data)
        return total.snapshot()

    def render(self, data: dict[str, Any]) -> bytes:
        lines: list[str] = []
        for kind, label in (("routes", "route"), ("upstreams", "upstream")):
            prefix = f"roost_gateway_{'route' if kind == 'routes' else 'upstream'}"
            lines.append(f"# TYPE {prefix}_requests_total counter")
            for name, s in sorted(data[kind].items()):
                lines.append(f'{prefix}_requests_total{{{label}="{_esc(name)}"}} {s["requests"]}')
            lines.append(f"# TYPE {prefix}_responses_total counter")
            for name, s in sorted(data[kind].items()):
                for cls, count in enumerate(s["classes"]):
                    code = f"{cls}xx" if cls else "none"
                    lines.append(f'{prefix}_responses_total{{{label}="{_esc(name)}",class="{code}"}} {count}')
            lines.append(f"# TYPE {prefix}_duration_seconds histogram")
            for name, s in sorted(data[kind].items()):
                running = 0
                for bound, count in zip((*BUCKETS, float("inf")), s["buckets"], strict=True):
                    running += count
                    le = "+Inf" if bound == float("inf") else f"{bound:g}"
                    lines.append(
                        f'{prefix}_duration_seconds_bucket{{{label}="{_esc(name)}",le="{le}"}} {running}'
                    )
                lines.append(f'{prefix}_duration_seconds_sum{{{label}="{_esc(name)}"}} {s["seconds"]:.6f}')
                lines.append(f'{prefix}_duration_seconds_count{{{label}="{_esc(name)}"}} {s["requests"]}')
            if kind == "upstreams":
                lines.append(f"# TYPE {prefix}_failures_total counter")
                for name, s in sorted(data[kind].items()):
                    lines.append(f'{prefix}_failures_total{{{label}="{_esc(name)}"}} {s["failures"]}')
                lines.append(f"# TYPE {prefix}_ejections_total counter")
                for name, s in sorted(data[kind].items()):
                    lines.append(f'{prefix}_ejections_total{{{label}="{_esc(name)}"}} {s["ejections"]}')
        return ("\n".join(lines) + "\n").encode()


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
