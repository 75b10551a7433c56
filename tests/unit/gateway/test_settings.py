"""The gateway's TOML config: [gateway] settings and [[route]] tables, with errors naming the field."""

from __future__ import annotations

import pytest

from roost.config import GatewayConfig
from roost.errors import ValidationError
from roost.gateway.settings import parse


def test_gateway_settings_override_the_base() -> None:
    """Keys in [gateway] replace the defaults; ints are accepted for seconds."""
    config, routes = parse({"gateway": {"retries": 0, "read_timeout": 5, "domain": "svc"}}, GatewayConfig())
    assert config.retries == 0 and config.read_timeout == 5.0 and config.domain == "svc"
    assert routes == ()


def test_routes_are_parsed_in_order() -> None:
    """[[route]] tables become routes with upper-case methods and lower-case header names."""
    data = {
        "route": [
            {
                "service": "pay",
                "path_prefix": "/p",
                "methods": ["get"],
                "headers": {"X-Canary": "1"},
                "tags": ["v2"],
                "policy": "least-outstanding",
                "read_timeout": 2,
                "retries": 1,
                "strip_prefix": True,
            },
            {"name": "web", "service": "web", "host": "Web.Example"},
        ]
    }
    _, routes = parse(data, GatewayConfig())
    first, second = routes
    assert first.service == "pay" and first.methods == frozenset({"GET"})
    assert first.headers == (("x-canary", "1"),) and first.tags == ("v2",)
    assert first.policy == "least_outstanding" and first.read_timeout == 2.0 and first.retries == 1
    assert second.name == "web" and second.host == "web.example" and second.path_prefix == "/"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"gateway": {"nope": 1}}, "gateway.nope"),
        ({"gateway": {"retries": "two"}}, "gateway.retries"),
        ({"route": [{"path_prefix": "/x"}]}, "route[0].service"),
        ({"route": [{"service": "a", "path_prefix": "x"}]}, "route[0].path_prefix"),
        ({"route": [{"service": "a", "policy": "fastest"}]}, "route[0].policy"),
        ({"route": [{"service": "a", "read_timeout": -1}]}, "route[0].read_timeout"),
        ({"route": [{"service": "a", "bogus": 1}]}, "route[0]"),
    ],
)
def test_bad_config_names_the_field(data: dict[str, object], field: str) -> None:
    """Each mistake raises ValidationError naming the offending field."""
    with pytest.raises(ValidationError) as info:
        parse(data, GatewayConfig())
    assert info.value.field == field
