"""Exceptions roost raises on purpose.

* RoostError
  + ValidationError    bad input: HTTP 400, DNS FORMERR; nothing was stored
  + NotFound           HTTP 404, DNS NXDOMAIN
  + Conflict           HTTP 409, e.g. a check for a service that is not registered
  + TooLarge           HTTP 413, a request body over the limit
  + Unavailable        HTTP 503, DNS SERVFAIL
    - StoreUnavailable the store did not answer; the write may not have happened
    - NoHealthyInstance the client found no instance to send a request to

This module imports nothing from roost, so every layer can raise these.
"""

from __future__ import annotations


class RoostError(Exception):
    """Base class of every error roost raises on purpose."""

    def __init__(self, message: str = "") -> None:
        super().__init__(message or (self.__doc__ or "").strip())
        self.message = message or (self.__doc__ or "").strip()

    def __str__(self) -> str:
        return self.message


class ValidationError(RoostError):
    """The input is not valid."""

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.field = field  # "Service.Port": echoed in the 400 body so the caller can fix it


class NotFound(RoostError):
    """No such object."""


class Conflict(RoostError):
    """The request conflicts with the current state."""


class TooLarge(RoostError):
    """The request body is too large."""


class Unavailable(RoostError):
    """The service cannot answer right now."""


class StoreUnavailable(Unavailable):
    """The store did not answer; the write may not have happened."""


class NoHealthyInstance(Unavailable):
    """No healthy instance of the service is available."""

    def __init__(self, service: str, message: str = "") -> None:
        super().__init__(message or f"no healthy instance of service {service!r}")
        self.service = service
