"""`roost gateway` flags: command line over config file over environment and defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from roost.cli.gateway import build_config
from roost.cli.main import build_parser
from roost.config import GatewayConfig


def config_of(*argv: str) -> tuple[GatewayConfig, tuple[Any, ...]]:
    return build_config(build_parser().parse_args(["gateway", *argv]))


def test_defaults_and_agent_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without flags the gateway listens on 127.0.0.1:8080 and finds the agent through CONSUL_HTTP_ADDR."""
    monkeypatch.delenv("ROOST_HTTP_ADDR", raising=False)
    monkeypatch.delenv("ROOST_GATEWAY_ADDR", raising=False)
    monkeypatch.setenv("CONSUL_HTTP_ADDR", "127.0.0.1:9500")
    config, routes = config_of()
    assert config.listen == "127.0.0.1:8080" and config.agent_addr == "127.0.0.1:9500"
    assert config.workers == 1 and routes == ()


def test_flags_override_the_config_file(tmp_path: Path) -> None:
    """A flag wins over the same setting in the file; the file's routes are kept."""
    path = tmp_path / "gw.toml"
    path.write_text(
        '[gateway]\nretries = 5\nidle_timeout = 9\n\n[[route]]\nservice = "web"\npath_prefix = "/w"\n'
    )
    config, routes = config_of("--config", str(path), "--retries", "1", "--no-strip-prefix", "--workers", "3")
    assert config.retries == 1 and config.idle_timeout == 9.0
    assert config.strip_prefix is False and config.workers == 3
    assert [r.path_prefix for r in routes] == ["/w"]


def test_unknown_policy_is_refused() -> None:
    """--policy must name one of the client library's policies."""
    from roost.errors import ValidationError

    with pytest.raises(ValidationError):
        config_of("--policy", "fastest")
    config, _ = config_of("--policy", "least-outstanding")
    assert config.policy == "least_outstanding"
