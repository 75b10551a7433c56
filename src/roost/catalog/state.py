"""The in-memory catalog: services, checks and their indexes. Sans-IO: changes go in, reads come out.

Every read of the agent (HTTP, DNS, UI) is served from here. The state changes only through
`apply()`, fed by the store's change stream, so every agent sharing a store converges on it.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass

import orjson

from roost.catalog.waiters import CHECKS, NODES, SERVICES, Topics, service_topic
from roost.model import Check, Service, Status, aggregate
from roost.model.check import CheckDefinition, CheckKind
from roost.model.health import SERF_HEALTH_ID
from roost.store.protocol import Change

SERVICE_PREFIX = "services/"
CHECK_PREFIX = "checks/"


def service_key(name: str, service_id: str) -> str:
    return f"{SERVICE_PREFIX}{name}/{service_id}"


def check_key(check_id: str) -> str:
    return CHECK_PREFIX + check_id


@dataclass(frozen=True, slots=True)
class Indexed:
    create_index: int
    modify_index: int


@dataclass(frozen=True, slots=True)
class Entry:
    """One instance as discovery sees it: the service, its checks (node checks first), and the
    aggregated status."""

    service: Service
    checks: tuple[Check, ...]
    status: Status
    index: Indexed


# Listener for check definitions appearing, changing or going: (check id, old, new).
CheckListener = Callable[[str, Check | None, Check | None], None]


class CatalogState:
    def __init__(self, node: str) -> None:
        self.node = node
        self.index = 0
        self.topics = Topics()
        self.services: dict[str, Service] = {}  # by ID
        self.service_keys: dict[str, str] = {}  # ID -> store key
        self.by_name: dict[str, set[str]] = {}  # lower-case name -> IDs
        self.checks: dict[str, Check] = {}  # by ID
        self.checks_of: dict[str, set[str]] = {}  # service ID -> check IDs
        self.indexes: dict[str, Indexed] = {}  # store key -> create/modify
        self.check_listeners: list[CheckListener] = []
        self.serf = Check(
            CheckDefinition(SERF_HEALTH_ID, "Serf Health Status", CheckKind.MANUAL),
            Status.PASSING,
            "Agent alive and reachable",
        )

    # -- applying changes --------------------------------------------------------------------

    def load(self, index: int, data: dict[str, tuple[int, int, bytes]]) -> None:
        """Replace everything with a snapshot (start-up, or after the store's history was compacted)."""
        old_checks = dict(self.checks)
        names = set(self.by_name)
        self.services.clear()
        self.service_keys.clear()
        self.by_name.clear()
        self.checks.clear()
        self.checks_of.clear()
        self.indexes.clear()
        for key, (created, modified, value) in data.items():
            self._put(key, value, Indexed(created, modified))
        self.index = max(self.index, index)
        for name in names | set(self.by_name):
            self.topics.bump(service_topic(name), self.index)
        for topic in (SERVICES, CHECKS, NODES):
            self.topics.bump(topic, self.index)
        for check_id in set(old_checks) | set(self.checks):
            old, new = old_checks.get(check_id), self.checks.get(check_id)
            if old != new:
                self._notify(check_id, old, new)

    def apply(self, changes: Iterable[Change]) -> None:
        touched: set[str] = set()
        last = self.index
        for change in changes:
            last = max(last, change.index)
            touched |= self._apply_one(change)
        self.index = last
        for topic in touched:
            self.topics.bump(topic, last)

    def _apply_one(self, change: Change) -> set[str]:
        key = change.key
        if change.value is None:
            return self._delete(key)
        old = self.indexes.get(key)
        indexed = Indexed(old.create_index if old else change.index, change.index)
        return self._put(key, change.value, indexed)

    def _put(self, key: str, value: bytes, indexed: Indexed) -> set[str]:
        try:
            data = orjson.loads(value)
        except orjson.JSONDecodeError:
            return set()  # a foreign key we cannot read: ignore rather than crash the agent
        if not isinstance(data, dict):
            return set()
        if key.startswith(SERVICE_PREFIX):
            name, sep, service_id = key[len(SERVICE_PREFIX) :].partition("/")
            if not sep or not name or not service_id:
                return set()
            try:
                svc = Service.from_dict(data, name=name, id=service_id)
            except (TypeError, ValueError, AttributeError):
                return set()
            svc = svc if (svc.name == name and svc.id == service_id) else _rename(svc, name, service_id)
            touched = {SERVICES, service_topic(name)}
            old_key = self.service_keys.get(service_id)
            if old_key is not None and old_key != key:
                touched |= self._delete(old_key)
            self.services[service_id] = svc
            self.service_keys[service_id] = key
            self.by_name.setdefault(name.lower(), set()).add(service_id)
            self.indexes[key] = indexed
            return touched
        if key.startswith(CHECK_PREFIX):
            try:
                check = Check.from_dict(data)
            except (KeyError, TypeError, ValueError, AttributeError):
                return set()
            check_id = key[len(CHECK_PREFIX) :]
            old_check = self.checks.get(check_id)
            if old_check is not None and old_check.service_id != check.service_id:
                self.checks_of.get(old_check.service_id, set()).discard(check_id)
            self.checks[check_id] = check
            self.checks_of.setdefault(check.service_id, set()).add(check_id)
            self.indexes[key] = indexed
            if old_check is None or old_check.definition != check.definition:
                self._notify(check_id, old_check, check)
            return self._check_topics(check)
        return set()

    def _delete(self, key: str) -> set[str]:
        self.indexes.pop(key, None)
        if key.startswith(SERVICE_PREFIX):
            name, _, service_id = key[len(SERVICE_PREFIX) :].partition("/")
            if self.service_keys.get(service_id) != key:
                return set()
            del self.service_keys[service_id]
            self.services.pop(service_id, None)
            ids = self.by_name.get(name.lower())
            if ids is not None:
                ids.discard(service_id)
                if not ids:
                    del self.by_name[name.lower()]
            return {SERVICES, service_topic(name)}
        if key.startswith(CHECK_PREFIX):
            check_id = key[len(CHECK_PREFIX) :]
            check = self.checks.pop(check_id, None)
            if check is None:
                return set()
            self.checks_of.get(check.service_id, set()).discard(check_id)
            self._notify(check_id, check, None)
            return self._check_topics(check)
        return set()

    def _check_topics(self, check: Check) -> set[str]:
        if not check.service_id:  # a node check changes the health of every service
            return {CHECKS, NODES, *(service_topic(n) for n in self.by_name)}
        svc = self.services.get(check.service_id)
        return {CHECKS, service_topic(svc.name)} if svc else {CHECKS}

    def _notify(self, check_id: str, old: Check | None, new: Check | None) -> None:
        for listener in self.check_listeners:
            listener(check_id, old, new)

    def set_output(self, check_id: str, output: str) -> bool:
        """Change only a check's output, in memory: no index moves, no watcher wakes (as Consul
        defers output-only updates); readers see it from their next answer."""
        check = self.checks.get(check_id)
        if check is None or check.output == output:
            return False
        self.checks[check_id] = check.with_status(check.status, output)
        for topic in self._check_topics(check):
            self.topics.touch(topic)
        return True

    # -- reads -------------------------------------------------------------------------------

    def node_checks(self) -> list[Check]:
        extra = [self.checks[c] for c in sorted(self.checks_of.get("", ()))]
        return [self.serf, *extra]

    def service_checks(self, service_id: str) -> list[Check]:
        return [self.checks[c] for c in sorted(self.checks_of.get(service_id, ()))]

    def instances(self, name: str, tags: tuple[str, ...] = ()) -> list[Entry]:
        """Every instance of a service, sorted by ID, with its checks and aggregated status."""
        node_checks = self.node_checks()
        out = []
        for service_id in sorted(self.by_name.get(name.lower(), ())):
            svc = self.services[service_id]
            if tags and not svc.has_tags(tags):
                continue
            checks = (*node_checks, *self.service_checks(service_id))
            status = aggregate(c.status for c in checks)
            out.append(Entry(svc, checks, status, self.indexes[self.service_keys[service_id]]))
        return out

    def service_names(self, only: Container[str] | None = None) -> dict[str, list[str]]:
        """Each service name with the union of its instances' tags (Consul's /v1/catalog/services);
        with `only`, counting just the instances whose IDs it holds."""
        out: dict[str, list[str]] = {}
        for ids in self.by_name.values():
            tags: dict[str, None] = {}
            name = ""
            for service_id in sorted(ids):
                if only is not None and service_id not in only:
                    continue
                svc = self.services[service_id]
                name = name or svc.name
                tags.update(dict.fromkeys(svc.tags))
            if name:
                out[name] = sorted(tags)
        return dict(sorted(out.items()))

    def topic_index(self, topic: str) -> int:
        """The index to report for a topic: never below 1, as Consul clients expect."""
        index = self.topics.index(topic)
        if index == 0:
            index = self.topics.index(SERVICES)
        return max(index, 1)


def _rename(svc: Service, name: str, service_id: str) -> Service:
    from dataclasses import replace

    return replace(svc, name=name, id=service_id)
