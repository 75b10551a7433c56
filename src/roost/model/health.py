"""Health status and the one rule that aggregates it (Consul: maintenance > critical > warning > passing)."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Status(StrEnum):
    PASSING = "passing"
    WARNING = "warning"
    CRITICAL = "critical"
    MAINTENANCE = "maintenance"


_RANK = {Status.PASSING: 0, Status.WARNING: 1, Status.CRITICAL: 2, Status.MAINTENANCE: 3}

MAINTENANCE_PREFIX = "_service_maintenance:"
NODE_MAINTENANCE_ID = "_node_maintenance"
SERF_HEALTH_ID = "serfHealth"


def aggregate(statuses: Iterable[Status]) -> Status:
    """The worst of the statuses; passing when there are none."""
    worst = Status.PASSING
    for status in statuses:
        if _RANK[status] > _RANK[worst]:
            worst = status
    return worst


def is_healthy(status: Status, *, allow_warning: bool) -> bool:
    """Whether an instance whose aggregated status is `status` may be handed to callers."""
    return status is Status.PASSING or (allow_warning and status is Status.WARNING)


def parse_status(value: str) -> Status:
    try:
        return Status(value.lower())
    except ValueError:
        raise ValueError(
            f"status must be one of passing, warning, critical, maintenance; got {value!r}"
        ) from None
