"""Which service a request goes to. Pure: a request's method, host, path and headers in, a route out.

Precedence, first match wins:

1. explicit routes from the config file, in file order;
2. routes services opt into from the registry (tag ``roost-gateway=/payments`` or meta
   ``roost-gateway: /payments``; a value without a leading ``/`` is a host name), longest prefix first;
3. the Host header ``<service>.<domain>``;
4. the path prefix ``/<service>/`` for every service in the catalog.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

OPT_IN_KEY = "roost-gateway"


@dataclass(frozen=True, slots=True)
class Route:
    """Where matching requests go, and how they are forwarded. ``None`` means the gateway's default."""

    name: str
    service: str
    host: str = ""  # exact host name without port, lower case; "" matches any
    path_prefix: str = "/"
    methods: frozenset[str] = frozenset()  # upper case; empty matches any
    headers: tuple[tuple[str, str], ...] = ()  # (lower-case name, value); value "" only needs presence
    strip_prefix: bool = False
    tags: tuple[str, ...] = ()  # only instances carrying every one of these tags
    policy: str | None = None
    connect_timeout: float | None = None
    read_timeout: float | None = None
    total_timeout: float | None = None
    retries: int | None = None
    source: str = "config"  # config | registry | host | default

    def matches(self, method: str, host: str, path: str, headers: Mapping[str, str]) -> bool:
        if self.host and self.host != host:
            return False
        if self.methods and method not in self.methods:
            return False
        if not prefix_matches(self.path_prefix, path):
            return False
        for name, value in self.headers:
            got = headers.get(name)
            if got is None or (value and got != value):
                return False
        return True

    def rewrite(self, path: str) -> str:
        """The path sent upstream: the matched prefix removed when ``strip_prefix`` is set."""
        if not self.strip_prefix or self.path_prefix == "/":
            return path
        rest = path[len(self.path_prefix.rstrip("/")) :]
        return rest if rest.startswith("/") else "/" + rest


def prefix_matches(prefix: str, path: str) -> bool:
    """``/pay`` matches ``/pay``, ``/pay/`` and ``/pay/x``, not ``/payments``."""
    if prefix == "/" or path == prefix:
        return True
    base = prefix.rstrip("/")
    return path == base or path.startswith(base + "/")


def registry_routes(service: str, tags: Iterable[str], meta: Mapping[str, str]) -> list[Route]:
    """Routes one instance opts its service into: ``roost-gateway=/x`` tags and the ``roost-gateway`` meta."""
    values: list[str] = []
    for tag in tags:
        key, eq, value = tag.partition("=")
        if eq and key.strip() == OPT_IN_KEY:
            values.extend(v.strip() for v in value.split(","))
    if OPT_IN_KEY in meta:
        values.extend(v.strip() for v in meta[OPT_IN_KEY].split(","))
    routes: list[Route] = []
    for value in values:
        if not value:
            continue
        if value.startswith("/"):
            prefix = "/" + value.strip("/") if value != "/" else "/"
            routes.append(
                Route(
                    name=f"{service}@{prefix}",
                    service=service,
                    path_prefix=prefix,
                    strip_prefix=True,
                    source="registry",
                )
            )
        else:
            host = value.lower()
            routes.append(Route(name=f"{service}@{host}", service=service, host=host, source="registry"))
    return routes


@dataclass(frozen=True, slots=True)
class RouteTable:
    """Every route the gateway knows at one catalog index. Built fresh on each catalog change."""

    explicit: tuple[Route, ...] = ()
    registry: tuple[Route, ...] = ()
    services: frozenset[str] = frozenset()
    domain: str = ""
    default_routes: bool = True
    strip_prefix: bool = True
    _by_service: dict[str, Route] = field(default_factory=dict, compare=False, repr=False)
    _by_host: dict[str, Route] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def build(
        cls,
        explicit: Sequence[Route],
        registry: Iterable[Route],
        services: Iterable[str],
        *,
        domain: str = "",
        default_routes: bool = True,
        strip_prefix: bool = True,
    ) -> RouteTable:
        names = frozenset(services)
        unique: dict[tuple[str, str], Route] = {}
        for route in registry:
            unique.setdefault((route.host, route.path_prefix), route)
        ordered = sorted(unique.values(), key=lambda r: (-len(r.host), -len(r.path_prefix), r.name))
        by_service = {
            name: Route(
                name=name, service=name, path_prefix="/" + name, strip_prefix=strip_prefix, source="default"
            )
            for name in names
        }
        domain = domain.strip(".").lower()
        by_host = (
            {
                f"{name}.{domain}".lower(): Route(name=f"{name}.{domain}", service=name, source="host")
                for name in names
            }
            if domain
            else {}
        )
        return cls(
            tuple(explicit), tuple(ordered), names, domain, default_routes, strip_prefix, by_service, by_host
        )

    def match(self, method: str, host: str, path: str, headers: Mapping[str, str]) -> Route | None:
        """The route for a request, or None. ``host`` is lower case without the port."""
        for route in self.explicit:
            if route.matches(method, host, path, headers):
                return route
        for route in self.registry:
            if route.matches(method, host, path, headers):
                return route
        if host:
            by_host = self._by_host.get(host)
            if by_host is not None:
                return by_host
        if self.default_routes:
            end = path.find("/", 1)
            first = path[1:] if end < 0 else path[1:end]
            return self._by_service.get(first)
        return None

    def describe(self) -> list[dict[str, object]]:
        """The table as JSON-ready rows, in match order (for ``GET /_roost/routes``)."""
        rows: list[dict[str, object]] = []
        for route in (*self.explicit, *self.registry):
            rows.append(_row(route))
        rows.extend(_row(r) for r in sorted(self._by_host.values(), key=lambda r: r.name))
        if self.default_routes:
            rows.extend(_row(r) for r in sorted(self._by_service.values(), key=lambda r: r.name))
        return rows


def _row(route: Route) -> dict[str, object]:
    return {
        "name": route.name,
        "service": route.service,
        "source": route.source,
        "host": route.host,
        "path_prefix": route.path_prefix,
        "methods": sorted(route.methods),
        "strip_prefix": route.strip_prefix,
        "tags": list(route.tags),
    }
