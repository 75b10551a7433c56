"""The value every part of the client passes around: one reachable instance of a service."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from roost.config import split_host_port

_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Instance:
    """One instance of a service, as a strategy found it.

    Args:
        service: the service name (``payment-service``).
        id: unique within the service (Consul's Service.ID, the etcd key's last part, ``host:port``).
        address: host name or IP to connect to.
        port: TCP port.
        weight: relative share for the weighted policy (Consul Weights, SRV weight); at least 1.
        tags: Consul tags.
        meta: Consul meta, or the extra fields of an etcd record.
        priority: SRV priority; lower is preferred (0 for every other strategy).
    """

    service: str
    id: str
    address: str
    port: int
    weight: int = 1
    tags: tuple[str, ...] = ()
    meta: Mapping[str, str] = field(default_factory=lambda: _EMPTY, hash=False)
    priority: int = 0

    @property
    def key(self) -> str:
        """``service/id``: the key policies and breakers keep their per-instance state under."""
        return f"{self.service}/{self.id}"

    @property
    def hostport(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"

    def has_tags(self, wanted: str | tuple[str, ...] | None) -> bool:
        if not wanted:
            return True
        if isinstance(wanted, str):
            return wanted in self.tags
        return all(tag in self.tags for tag in wanted)


def parse_hostport(service: str, value: str, *, default_port: int = 80) -> Instance:
    """``"10.0.0.1:8080"`` (or ``"[::1]:80"``, ``"host"``) -> an Instance with ``id`` = the text."""
    text = value.strip()
    host, port = split_host_port(text, default_port, default_host="")
    return Instance(service, text, host, port)


class ChangeKind(StrEnum):
    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"


@dataclass(frozen=True, slots=True)
class Change:
    """What ``watch()`` yields: one instance appeared, went away or changed (address, tags, weight...)."""

    kind: ChangeKind
    instance: Instance  # the new value; for REMOVED the last known one
    previous: Instance | None = None  # for CHANGED


def diff(old: tuple[Instance, ...], new: tuple[Instance, ...]) -> list[Change]:
    """The changes that turn ``old`` into ``new``, matched by instance ID, in a stable order."""
    before = {i.id: i for i in old}
    after = {i.id: i for i in new}
    changes: list[Change] = []
    for iid, inst in after.items():
        prev = before.get(iid)
        if prev is None:
            changes.append(Change(ChangeKind.ADDED, inst))
        elif prev != inst or dict(prev.meta) != dict(inst.meta):
            changes.append(Change(ChangeKind.CHANGED, inst, prev))
    for iid, inst in before.items():
        if iid not in after:
            changes.append(Change(ChangeKind.REMOVED, inst))
    return changes
