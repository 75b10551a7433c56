"""The only module that knows HTTP status codes for roost's errors."""

from __future__ import annotations

from roost.errors import Conflict, NotFound, RoostError, TooLarge, Unavailable, ValidationError

HTTP_STATUS: dict[type[RoostError], int] = {
    ValidationError: 400,
    NotFound: 404,
    Conflict: 409,
    TooLarge: 413,
    Unavailable: 503,
}


def status_for(error: RoostError) -> int:
    for cls in type(error).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 400


class MethodNotAllowed(RoostError):
    """Method not allowed."""


HTTP_STATUS[MethodNotAllowed] = 405
