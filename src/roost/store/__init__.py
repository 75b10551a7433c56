"""Durable (and, with etcd, shared) storage behind one protocol; pick one with `open_store()`."""

from __future__ import annotations

from pathlib import Path

from roost.config import AgentConfig
from roost.errors import ValidationError
from roost.store.protocol import Change, Compacted, Store

__all__ = ["Change", "Compacted", "Store", "open_store"]


def open_store(config: AgentConfig) -> Store:
    """The store named by ``--store``: sqlite (default), sqlite:///path, memory, etcd://host:port,..."""
    spec = config.store.strip()
    if spec in ("", "sqlite"):
        from roost.store.sqlite import SqliteStore

        return SqliteStore(Path(config.data_dir))
    if spec.startswith("sqlite://"):
        from roost.store.sqlite import SqliteStore

        return SqliteStore(Path(spec[len("sqlite://") :] or config.data_dir))
    if spec == "memory":
        from roost.store.memory import MemoryStore

        return MemoryStore()
    if spec.startswith("etcd://") or spec.startswith("etcds://"):
        from roost.store.etcd import EtcdStore  # type: ignore[import-not-found,unused-ignore]

        return EtcdStore.from_config(config)  # type: ignore[no-any-return,unused-ignore]
    raise ValidationError(
        f"unknown store {spec!r}: use sqlite, sqlite:///path, memory or etcd://host:port", field="store"
    )
