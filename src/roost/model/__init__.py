"""roost's data model: pure values, no I/O. Imports nothing from roost but errors."""

from roost.model.check import Check, CheckDefinition, CheckKind
from roost.model.health import Status, aggregate, is_healthy
from roost.model.service import Service, TaggedAddress, Weights

__all__ = [
    "Check",
    "CheckDefinition",
    "CheckKind",
    "Service",
    "Status",
    "TaggedAddress",
    "Weights",
    "aggregate",
    "is_healthy",
]
