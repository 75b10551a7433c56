"""The `roost` command: `roost agent`, `roost gateway`, and client commands against an agent."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from roost import __version__
from roost.cli import agent, services
from roost.errors import RoostError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="roost", description="roost: service discovery with a Consul-compatible API"
    )
    parser.add_argument("--version", action="version", version=f"roost {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    agent.add_parser(sub)
    services.add_parsers(sub)
    try:
        from roost.cli import gateway  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        pass
    else:
        gateway.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except RoostError as exc:
        print(f"roost: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
