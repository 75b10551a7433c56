"""One JSON line per request, buffered and written out a few times a second (never per request)."""

from __future__ import annotations

import os
import sys
from typing import Any

import orjson

FLUSH_AT = 64 * 1024


class AccessLog:
    """``target``: "-" for stdout, "" to turn the log off, or a file path (appended to)."""

    def __init__(self, target: str) -> None:
        self.enabled = bool(target)
        self._buf: list[bytes] = []
        self._size = 0
        self._fd = -1
        self._own = False
        if target == "-":
            self._fd = sys.stdout.fileno()
        elif target:
            self._fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            self._own = True

    def write(self, record: dict[str, Any]) -> None:
        line = orjson.dumps(record) + b"\n"
        self._buf.append(line)
        self._size += len(line)
        if self._size >= FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        if not self._buf or self._fd < 0:
            return
        data = b"".join(self._buf)
        self._buf.clear()
        self._size = 0
        try:
            if self._fd == sys.stdout.fileno():
                sys.stdout.flush()
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)  # not inside the slice: see setup.py
                view = view[written:]
        except OSError:
            pass

    def close(self) -> None:
        self.flush()
        if self._own and self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
