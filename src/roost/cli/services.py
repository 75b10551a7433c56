"""Client commands against a running agent: register, deregister, services, instances, watch."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from roost.config import agent_http_addr
from roost.errors import NotFound, RoostError, Unavailable, ValidationError


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--addr",
        default=None,
        help="agent HTTP address (default: ROOST_HTTP_ADDR, CONSUL_HTTP_ADDR, 127.0.0.1:8500)",
    )
    common.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = sub.add_parser("register", parents=[common], help="register a service instance")
    p.add_argument("-f", "--file", help="a JSON service definition (Consul's format); '-' reads stdin")
    p.add_argument("--name")
    p.add_argument("--id")
    p.add_argument("--address", default="")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--tag", action="append", default=[], help="repeatable")
    p.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE", help="repeatable")
    p.add_argument("--http-check", help="URL probed by an HTTP check")
    p.add_argument("--tcp-check", help="host:port probed by a TCP check")
    p.add_argument("--ttl", help="add a TTL check with this TTL, e.g. 30s")
    p.add_argument("--interval", default="10s", help="check interval (default %(default)s)")
    p.set_defaults(func=register)

    p = sub.add_parser("deregister", parents=[common], help="deregister a service instance by ID")
    p.add_argument("service_id")
    p.set_defaults(func=deregister)

    p = sub.add_parser("services", parents=[common], help="list services and their tags")
    p.set_defaults(func=services)

    p = sub.add_parser("instances", parents=[common], help="list the instances of a service")
    p.add_argument("name")
    p.add_argument("--passing", action="store_true", help="only instances whose checks all pass")
    p.add_argument("--tag", action="append", default=[], help="only instances with this tag (repeatable)")
    p.set_defaults(func=instances)

    p = sub.add_parser(
        "watch", parents=[common], help="print the instances of a service each time they change"
    )
    p.add_argument("name")
    p.add_argument("--passing", action="store_true")
    p.add_argument("--tag", action="append", default=[])
    p.add_argument("--wait", default="60s", help="blocking query wait (default %(default)s)")
    p.set_defaults(func=watch)


class AgentClient:
    def __init__(self, addr: str | None, timeout: float = 10.0) -> None:
        addr = addr or agent_http_addr()
        self.base = addr if addr.startswith(("http://", "https://")) else f"http://{addr}"
        self.http = httpx.Client(base_url=self.base, timeout=timeout)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise Unavailable(f"cannot reach the agent at {self.base}: {exc or type(exc).__name__}") from None
        if response.status_code == 404:
            raise NotFound(response.text.strip() or "not found")
        if 400 <= response.status_code < 500:
            raise ValidationError(response.text.strip() or f"HTTP {response.status_code}")
        if response.status_code >= 500:
            raise Unavailable(f"agent error {response.status_code}: {response.text.strip()}")
        return response


def _print_table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def register(args: argparse.Namespace) -> int:
    if args.file:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
        try:
            body: Any = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValidationError(f"{args.file} is not valid JSON: {exc}") from None
    else:
        if not args.name:
            raise ValidationError("give --name (or -f FILE with a service definition)")
        meta = {}
        for item in args.meta:
            key, sep, value = item.partition("=")
            if not sep:
                raise ValidationError(f"--meta {item!r} must be KEY=VALUE")
            meta[key] = value
        body = {
            "Name": args.name,
            "ID": args.id or args.name,
            "Address": args.address,
            "Port": args.port,
            "Tags": args.tag,
            "Meta": meta,
        }
        checks = []
        if args.http_check:
            checks.append({"HTTP": args.http_check, "Interval": args.interval})
        if args.tcp_check:
            checks.append({"TCP": args.tcp_check, "Interval": args.interval})
        if args.ttl:
            checks.append({"TTL": args.ttl})
        if checks:
            body["Checks"] = checks
    AgentClient(args.addr).request("PUT", "/v1/agent/service/register", json=body)
    if not args.json:
        name = body.get("Name") or body.get("name") or (body.get("service") or {}).get("name", "")
        print(f"registered {name}")
    return 0


def deregister(args: argparse.Namespace) -> int:
    AgentClient(args.addr).request("PUT", f"/v1/agent/service/deregister/{quote(args.service_id, safe='')}")
    if not args.json:
        print(f"deregistered {args.service_id}")
    return 0


def services(args: argparse.Namespace) -> int:
    data = AgentClient(args.addr).request("GET", "/v1/catalog/services").json()
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    _print_table([[name, ",".join(tags)] for name, tags in data.items()], ["SERVICE", "TAGS"])
    return 0


def _instances(client: AgentClient, args: argparse.Namespace, index: int = 0) -> tuple[list[Any], int]:
    params: list[tuple[str, str]] = [("tag", t) for t in args.tag]
    if args.passing:
        params.append(("passing", "1"))
    if index:
        params += [("index", str(index)), ("wait", getattr(args, "wait", "60s"))]
    response = client.request("GET", f"/v1/health/service/{args.name}", params=params)
    return response.json(), int(response.headers.get("x-consul-index", "0"))


def _rows(entries: list[Any]) -> list[list[str]]:
    rows = []
    for e in entries:
        svc, checks = e["Service"], e["Checks"]
        status = "passing"
        for rank in ("warning", "critical"):
            if any(c["Status"] == rank for c in checks):
                status = rank
        address = svc["Address"] or e["Node"]["Address"]
        rows.append([svc["ID"], f"{address}:{svc['Port']}", status, ",".join(svc["Tags"])])
    return rows


def instances(args: argparse.Namespace) -> int:
    entries, _ = _instances(AgentClient(args.addr), args)
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    _print_table(_rows(entries), ["ID", "ADDRESS", "STATUS", "TAGS"])
    return 0


def watch(args: argparse.Namespace) -> int:
    """Print the instance list now and after each change, via blocking queries, until Ctrl-C."""
    client = AgentClient(args.addr, timeout=None)  # type: ignore[arg-type]
    index, previous, backoff = 0, None, 0.5
    while True:
        try:
            entries, new_index = _instances(client, args, index)
        except Unavailable as exc:
            print(f"roost: {exc}; retrying in {backoff:.1f}s", file=sys.stderr, flush=True)
            time.sleep(backoff)
            backoff = min(backoff * 2, 10.0)
            continue
        except RoostError:
            raise
        backoff = 0.5
        index = new_index if new_index >= index else 0  # reset if the index went backwards
        if entries == previous:
            continue
        previous = entries
        if args.json:
            print(json.dumps({"index": index, "instances": entries}), flush=True)
        else:
            print(f"--- {args.name} at index {index}: {len(entries)} instance(s)")
            _print_table(_rows(entries), ["ID", "ADDRESS", "STATUS", "TAGS"])
            sys.stdout.flush()
