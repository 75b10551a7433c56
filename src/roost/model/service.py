"""A registered service instance: pure values, changed with dataclasses.replace."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Weights:
    """SRV / load-balancing weights, by the instance's health (Consul's Weights)."""

    passing: int = 1
    warning: int = 1


@dataclass(frozen=True, slots=True)
class TaggedAddress:
    address: str
    port: int


@dataclass(frozen=True, slots=True)
class Service:
    """One instance of a named service."""

    id: str
    name: str
    address: str = ""
    port: int = 0
    tags: tuple[str, ...] = ()
    meta: dict[str, str] = field(default_factory=dict)
    weights: Weights = Weights()
    enable_tag_override: bool = False
    tagged_addresses: dict[str, TaggedAddress] = field(default_factory=dict)
    kind: str = ""
    # Who holds this registration: the agent that accepted it ("" for instances that a plain etcd
    # client wrote). Only the owner runs its checks.
    owner: str = ""

    def has_tags(self, wanted: tuple[str, ...]) -> bool:
        return all(tag in self.tags for tag in wanted)

    def to_dict(self) -> dict[str, Any]:
        """The stored form. `host` is kept beside `address` so plain etcd clients can read it."""
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "host": self.address,
            "address": self.address,
            "port": self.port,
            "tags": list(self.tags),
            "meta": dict(self.meta),
            "weights": {"passing": self.weights.passing, "warning": self.weights.warning},
        }
        if self.enable_tag_override:
            out["enable_tag_override"] = True
        if self.tagged_addresses:
            out["tagged_addresses"] = {
                k: {"address": v.address, "port": v.port} for k, v in self.tagged_addresses.items()
            }
        if self.kind:
            out["kind"] = self.kind
        if self.owner:
            out["owner"] = self.owner
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, name: str = "", id: str = "") -> Service:
        """Read the stored form, tolerating the minimal `{"host", "port"}` that plain clients write."""
        weights = data.get("weights") or {}
        tagged = data.get("tagged_addresses") or {}
        meta = data.get("meta") or {}
        return cls(
            id=str(data.get("id") or id),
            name=str(data.get("name") or name),
            address=str(data.get("address") or data.get("host") or ""),
            port=int(data.get("port") or 0),
            tags=tuple(str(t) for t in data.get("tags") or ()),
            meta={str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {},
            weights=Weights(int(weights.get("passing", 1)), int(weights.get("warning", 1))),
            enable_tag_override=bool(data.get("enable_tag_override", False)),
            tagged_addresses={
                str(k): TaggedAddress(str(v.get("address", "")), int(v.get("port", 0)))
                for k, v in tagged.items()
            },
            kind=str(data.get("kind") or ""),
            owner=str(data.get("owner") or ""),
        )
