"""The route table: precedence, prefix matching and rewriting, registry opt-ins."""

from __future__ import annotations

from roost.gateway.routing import Route, RouteTable, prefix_matches, registry_routes


def table(
    *explicit: Route, registry: tuple[Route, ...] = (), services: tuple[str, ...] = ("web", "pay")
) -> RouteTable:
    return RouteTable.build(explicit, registry, services, domain="roost")


def test_prefix_matches_whole_segments_only() -> None:
    """`/pay` matches `/pay` and `/pay/x` but not `/payments`."""
    assert prefix_matches("/pay", "/pay")
    assert prefix_matches("/pay", "/pay/x")
    assert prefix_matches("/pay/", "/pay")
    assert not prefix_matches("/pay", "/payments")
    assert prefix_matches("/", "/anything")


def test_default_route_strips_the_service_prefix() -> None:
    """`/web/a/b` goes to service web as `/a/b`; `/web` alone becomes `/`."""
    route = table().match("GET", "", "/web/a/b", {})
    assert route is not None and route.service == "web" and route.source == "default"
    assert route.rewrite("/web/a/b") == "/a/b"
    assert route.rewrite("/web") == "/"


def test_default_routes_can_keep_the_prefix_or_be_off() -> None:
    """With strip_prefix off the path is forwarded as is; with default routes off nothing matches."""
    keep = RouteTable.build((), (), ("web",), strip_prefix=False)
    route = keep.match("GET", "", "/web/a", {})
    assert route is not None and route.rewrite("/web/a") == "/web/a"
    off = RouteTable.build((), (), ("web",), default_routes=False)
    assert off.match("GET", "", "/web/a", {}) is None


def test_unknown_service_has_no_route() -> None:
    """A first path segment that names no service matches nothing."""
    assert table().match("GET", "", "/nope/x", {}) is None


def test_host_route_uses_the_domain() -> None:
    """Host `pay.roost` routes to service pay with the path unchanged."""
    route = table().match("GET", "pay.roost", "/web/x", {})
    assert route is not None and route.service == "pay" and route.rewrite("/web/x") == "/web/x"


def test_explicit_routes_come_first_and_match_all_conditions() -> None:
    """A config route needs its host, method and header to match, and wins over everything else."""
    canary = Route(
        name="canary",
        service="pay",
        host="api.example",
        path_prefix="/web",
        methods=frozenset({"GET"}),
        headers=(("x-canary", "1"),),
    )
    t = table(canary)
    hit = t.match("GET", "api.example", "/web/x", {"x-canary": "1"})
    assert hit is canary
    assert t.match("POST", "api.example", "/web/x", {"x-canary": "1"}) is not canary
    assert t.match("GET", "api.example", "/web/x", {"x-canary": "2"}) is not canary
    assert t.match("GET", "other", "/web/x", {"x-canary": "1"}) is not canary


def test_header_condition_with_empty_value_needs_presence_only() -> None:
    """A header condition with value "" matches any value but not absence."""
    route = Route(name="r", service="web", headers=(("x-debug", ""),))
    assert route.matches("GET", "", "/", {"x-debug": "whatever"})
    assert not route.matches("GET", "", "/", {})


def test_registry_routes_from_tags_and_meta() -> None:
    """Tag `roost-gateway=/payments` and meta `roost-gateway` give prefix and host routes."""
    routes = registry_routes("pay", ["v1", "roost-gateway=/payments/"], {"roost-gateway": "pay.example.com"})
    assert [(r.path_prefix, r.host, r.strip_prefix) for r in routes] == [
        ("/payments", "", True),
        ("/", "pay.example.com", False),
    ]
    assert registry_routes("pay", ["roost-gatewayx=/a", "other"], {}) == []


def test_registry_routes_longest_prefix_wins_and_beat_default() -> None:
    """Among opt-in routes the longest prefix matches first, and opt-ins win over default routes."""
    short = Route(name="a", service="web", path_prefix="/api", strip_prefix=True, source="registry")
    long = Route(name="b", service="pay", path_prefix="/api/pay", strip_prefix=True, source="registry")
    shadow = Route(name="c", service="pay", path_prefix="/web", strip_prefix=True, source="registry")
    t = table(registry=(short, long, shadow))
    assert t.match("GET", "", "/api/pay/1", {}) is long
    assert t.match("GET", "", "/api/x", {}) is short
    assert t.match("GET", "", "/web/x", {}) is shadow
    assert long.rewrite("/api/pay/1") == "/1"


def test_describe_lists_routes_in_match_order() -> None:
    """describe() gives explicit, registry, host and default routes, in that order."""
    explicit = Route(name="e", service="web", path_prefix="/e")
    reg = Route(name="r", service="pay", path_prefix="/r", source="registry")
    rows = table(explicit, registry=(reg,)).describe()
    assert [row["source"] for row in rows] == ["config", "registry", "host", "host", "default", "default"]
