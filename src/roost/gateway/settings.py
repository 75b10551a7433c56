"""The gateway's config file (TOML): ``[gateway]`` settings and ``[[route]]`` tables.

```toml
[gateway]
listen = "127.0.0.1:8080"
domain = "roost"            # Host: <service>.roost
retries = 2
read_timeout = 30.0

[[route]]
name = "payments-v2"
service = "payments"
host = "pay.example.com"    # optional; exact, without the port
path_prefix = "/api/pay"    # optional; default "/"
methods = ["GET", "POST"]   # optional
headers = { x-canary = "1" }  # optional; "" only needs the header present
strip_prefix = true         # optional; default false
tags = ["v2"]               # optional: only instances with all these tags
policy = "least_outstanding" # optional: round_robin, random, weighted, least_outstanding, p2c_ewma
connect_timeout = 1.0       # optional, seconds
read_timeout = 5.0
total_timeout = 10.0
retries = 1
```
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

from roost.client.balance import POLICIES
from roost.config import GatewayConfig
from roost.errors import ValidationError
from roost.gateway.routing import Route

_KINDS = {int: "a whole number", float: "a number", str: "a string", bool: "true or false"}
_ROUTE_KEYS = {
    "name",
    "service",
    "host",
    "path_prefix",
    "methods",
    "headers",
    "strip_prefix",
    "tags",
    "policy",
    "connect_timeout",
    "read_timeout",
    "total_timeout",
    "retries",
}


def load(path: str | Path, base: GatewayConfig) -> tuple[GatewayConfig, tuple[Route, ...]]:
    """Read a config file: ``base`` with the ``[gateway]`` values applied, and the routes in file order."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValidationError(f"cannot read gateway config {path}: {exc}", field="config") from exc
    return parse(data, base)


def parse(data: dict[str, Any], base: GatewayConfig) -> tuple[GatewayConfig, tuple[Route, ...]]:
    gateway = data.get("gateway", {})
    if not isinstance(gateway, dict):
        raise ValidationError("[gateway] must be a table", field="gateway")
    fields = {f.name: f for f in dataclasses.fields(GatewayConfig)}
    changes: dict[str, Any] = {}
    for key, value in gateway.items():
        name = key.replace("-", "_")
        if name == "agent":
            name = "agent_addr"
        if name not in fields:
            raise ValidationError(f"unknown setting gateway.{key}", field=f"gateway.{key}")
        expected = type(getattr(base, name))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            kind = _KINDS.get(expected, expected.__name__)
            raise ValidationError(f"gateway.{key} must be {kind}", field=f"gateway.{key}")
        changes[name] = value
    config = dataclasses.replace(base, **changes)
    raw_routes = data.get("route", [])
    if not isinstance(raw_routes, list):
        raise ValidationError("[[route]] must be an array of tables", field="route")
    routes = tuple(parse_route(r, i) for i, r in enumerate(raw_routes))
    return config, routes


def parse_route(raw: Any, i: int) -> Route:
    where = f"route[{i}]"
    if not isinstance(raw, dict):
        raise ValidationError(f"{where} must be a table", field=where)
    unknown = set(raw) - _ROUTE_KEYS
    if unknown:
        raise ValidationError(f"{where}: unknown keys {sorted(unknown)}", field=where)
    service = raw.get("service")
    if not isinstance(service, str) or not service:
        raise ValidationError(f"{where}.service is required", field=f"{where}.service")
    prefix = str(raw.get("path_prefix", "/"))
    if not prefix.startswith("/"):
        raise ValidationError(f"{where}.path_prefix must start with /", field=f"{where}.path_prefix")
    policy = raw.get("policy")
    if policy is not None and str(policy).replace("-", "_") not in POLICIES:
        raise ValidationError(f"{where}.policy must be one of {sorted(POLICIES)}", field=f"{where}.policy")
    headers = raw.get("headers", {})
    if not isinstance(headers, dict):
        raise ValidationError(f"{where}.headers must be a table", field=f"{where}.headers")

    def seconds(key: str) -> float | None:
        value = raw.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ValidationError(f"{where}.{key} must be a positive number", field=f"{where}.{key}")
        return float(value)

    retries = raw.get("retries")
    if retries is not None and (isinstance(retries, bool) or not isinstance(retries, int) or retries < 0):
        raise ValidationError(f"{where}.retries must be a whole number >= 0", field=f"{where}.retries")
    return Route(
        name=str(raw.get("name") or f"{service}#{i}"),
        service=service,
        host=str(raw.get("host", "")).lower(),
        path_prefix=prefix,
        methods=frozenset(str(m).upper() for m in raw.get("methods", ())),
        headers=tuple((str(k).lower(), str(v)) for k, v in headers.items()),
        strip_prefix=bool(raw.get("strip_prefix", False)),
        tags=tuple(str(t) for t in raw.get("tags", ())),
        policy=str(policy).replace("-", "_") if policy is not None else None,
        connect_timeout=seconds("connect_timeout"),
        read_timeout=seconds("read_timeout"),
        total_timeout=seconds("total_timeout"),
        retries=retries,
        source="config",
    )
