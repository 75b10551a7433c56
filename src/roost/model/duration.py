"""Go-style durations ("10s", "1m30s", "500ms"), as Consul's JSON and query strings carry them."""

from __future__ import annotations

import re

from roost.errors import ValidationError

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
MAX_SECONDS = 10 * 365 * 24 * 3600.0


def parse_duration(value: object, *, field: str) -> float:
    """Seconds from a Go duration string, or from an integer of nanoseconds (Consul accepts both).

    A bare number in a string is taken as seconds, as Consul's query parameters do ("wait=30").
    """
    if isinstance(value, bool):
        raise ValidationError(f'{field} must be a duration such as "10s", not a boolean', field=field)
    if isinstance(value, int | float):
        if value < 0:
            raise ValidationError(f"{field} must not be negative", field=field)
        return float(value) / 1e9
    if not isinstance(value, str):
        raise ValidationError(f'{field} must be a duration such as "10s"', field=field)
    text = value.strip()
    if text in ("", "0"):
        return 0.0
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if seconds < 0 or seconds != seconds:
            raise ValidationError(f"{field} must not be negative: {value!r}", field=field)
        return min(seconds, MAX_SECONDS)
    total, pos = 0.0, 0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or pos == 0:
        raise ValidationError(
            f"{field}: {value!r} is not a duration (use a number with a unit: 500ms, 10s, 5m, 1h)",
            field=field,
        )
    return min(total, MAX_SECONDS)


def format_duration(seconds: float | None) -> str:
    """The Go spelling of a duration: 10s, 1m30s, 500ms, 0s."""
    if not seconds:
        return "0s" if seconds == 0 else ""
    if seconds < 1:
        ms = seconds * 1000
        return f"{ms:g}ms" if ms >= 1 else f"{seconds * 1e6:g}µs"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    out = ""
    if hours:
        out += f"{int(hours)}h"
    if hours or minutes:
        out += f"{int(minutes)}m"
    out += f"{round(secs, 9):g}s"
    return out
