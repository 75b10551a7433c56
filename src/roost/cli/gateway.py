"""`roost gateway`: a reverse proxy that routes each request to a healthy instance of a service."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from roost.config import DEFAULT_GATEWAY_ADDR, GatewayConfig, agent_http_addr, env
from roost.errors import ValidationError

# flag -> (GatewayConfig field, type, help)
_TUNABLES: list[tuple[str, str, type, str]] = [
    (
        "--domain",
        "domain",
        str,
        "Host <service>.<domain> routes to <service>; '' turns it off (default roost)",
    ),
    (
        "--policy",
        "policy",
        str,
        "load-balancing policy: round_robin, random, weighted, least_outstanding, p2c_ewma",
    ),
    ("--access-log", "access_log", str, "'-' stdout (default), '' off, or a file to append JSON lines to"),
    ("--retries", "retries", int, "extra attempts on another instance (default 2)"),
    ("--connect-timeout", "connect_timeout", float, "seconds (default 2)"),
    ("--read-timeout", "read_timeout", float, "seconds without a byte from the upstream (default 30)"),
    (
        "--total-timeout",
        "total_timeout",
        float,
        "seconds for a whole exchange, body included; 0: none (default 300)",
    ),
    (
        "--consecutive-failures",
        "consecutive_failures",
        int,
        "failures in a row that eject an instance (default 5)",
    ),
    (
        "--base-ejection",
        "base_ejection",
        float,
        "seconds of the first ejection, growing with each (default 30)",
    ),
    ("--max-ejection", "max_ejection", float, "longest ejection in seconds (default 300)"),
    (
        "--max-ejection-percent",
        "max_ejection_percent",
        int,
        "cap on the share of instances ejected (default 50)",
    ),
    ("--max-connections", "max_connections", int, "concurrent client connections (default 10000)"),
    ("--max-request-line", "max_request_line", int, "bytes in the request target (default 8192)"),
    ("--max-header-bytes", "max_header_bytes", int, "bytes of request header fields (default 32768)"),
    ("--max-headers", "max_headers", int, "number of request header fields (default 100)"),
    ("--header-timeout", "header_timeout", float, "seconds to receive a request head (default 10)"),
    ("--body-timeout", "body_timeout", float, "longest pause in a request body, seconds (default 30)"),
    ("--idle-timeout", "idle_timeout", float, "seconds a keep-alive connection may idle (default 60)"),
]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "gateway",
        help="run the gateway: a reverse proxy to healthy instances",
        description="Route /<service>/... and Host <service>.<domain> (and config-file or "
        "registry-tag routes) to healthy instances found through the agent.",
    )
    p.add_argument(
        "--listen",
        default=None,
        help=f"address to accept clients on (env ROOST_GATEWAY_ADDR; default {DEFAULT_GATEWAY_ADDR})",
    )
    p.add_argument(
        "--agent",
        default=None,
        help="the agent's HTTP address (env ROOST_HTTP_ADDR or CONSUL_HTTP_ADDR; default 127.0.0.1:8500)",
    )
    p.add_argument("--config", default="", help="TOML file with [gateway] settings and [[route]] tables")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes sharing the port; 0: one per CPU (default 1)",
    )
    p.add_argument(
        "--no-strip-prefix",
        dest="strip_prefix",
        action="store_const",
        const=False,
        default=None,
        help="forward /<service>/x as is instead of as /x",
    )
    p.add_argument(
        "--no-default-routes",
        dest="default_routes",
        action="store_const",
        const=False,
        default=None,
        help="do not route /<service>/ for every catalog service",
    )
    limits = p.add_argument_group("timeouts, retries, ejection and limits")
    for flag, name, kind, text in _TUNABLES:
        limits.add_argument(flag, dest=name, type=kind, default=None, help=text)
    p.set_defaults(func=run)


def build_config(args: argparse.Namespace) -> tuple[GatewayConfig, tuple[Any, ...]]:
    from roost.client.balance import POLICIES  # imported here: other commands need not load it
    from roost.gateway.settings import load

    base = GatewayConfig(listen=env("ROOST_GATEWAY_ADDR", DEFAULT_GATEWAY_ADDR), agent_addr=agent_http_addr())
    routes: tuple[Any, ...] = ()
    if args.config:
        base, routes = load(args.config, base)
    changes: dict[str, Any] = {}
    if args.listen is not None:
        changes["listen"] = args.listen
    if args.agent is not None:
        changes["agent_addr"] = args.agent
    for name in ("workers", "strip_prefix", "default_routes", *(t[1] for t in _TUNABLES)):
        value = getattr(args, name, None)
        if value is not None:
            changes[name] = value
    config = dataclasses.replace(base, **changes)
    if config.policy.replace("-", "_") not in POLICIES:
        raise ValidationError(f"--policy must be one of {', '.join(POLICIES)}", field="policy")
    return dataclasses.replace(config, policy=config.policy.replace("-", "_")), routes


def run(args: argparse.Namespace) -> int:
    from roost.gateway.server import serve

    config, routes = build_config(args)
    return serve(config, routes)
