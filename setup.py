"""Builds roost; the gateway's data path is compiled to C with mypyc when it can be.

The gateway forwards each request through a handful of small typed Python modules (parser
callbacks, the exchange state machine, connection pools, routing, metrics, the access log).
Compiled with mypyc they run about 1.4x faster per request (BENCHMARKS.md, "Gateway"); the same
modules stay importable as plain Python. The build falls back to plain Python, with a warning,
when mypyc or a C compiler is missing, or when ROOST_PURE_PYTHON=1 (handy while editing them:
a compiled module shadows its .py file until the package is built again).

mypyc note: it has miscompiled a call inside a slice (``view[os.write(fd, view):]`` ran the call
twice), so keep calls with side effects out of subscript expressions in these modules.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext

COMPILED = [
    "src/roost/gateway/accesslog.py",
    "src/roost/gateway/exchange.py",
    "src/roost/gateway/metrics.py",
    "src/roost/gateway/outlier.py",
    "src/roost/gateway/proxy.py",
    "src/roost/gateway/routing.py",
    "src/roost/gateway/state.py",
    "src/roost/gateway/upstream.py",
]


class OptionalBuildExt(build_ext):
    """Build the compiled modules if the machine can; otherwise install plain Python."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler, no Python headers, ...
            print(f"roost: compiling the gateway failed ({exc}); installing plain Python", file=sys.stderr)

    def build_extension(self, ext: Any) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            print(f"roost: compiling {ext.name} failed ({exc}); it stays plain Python", file=sys.stderr)


def extensions() -> list[Any]:
    if os.environ.get("ROOST_PURE_PYTHON") == "1":
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("roost: mypyc is not available; installing plain Python", file=sys.stderr)
        return []
    try:
        # Our own options, not the project's strict mypy settings: the build environment does not
        # have roost's dependencies installed, so their types are unknown (Any) here.
        return list(
            mypycify(
                ["--config-file", "", "--ignore-missing-imports", *COMPILED],
                opt_level="3",
                group_name="roost_gateway",
            )
        )
    except BaseException as exc:  # mypyc reports type errors with SystemExit
        print(
            f"roost: mypyc could not compile the gateway ({exc!r}); installing plain Python", file=sys.stderr
        )
        return []


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
