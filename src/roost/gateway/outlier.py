"""Outlier ejection per upstream instance, after Envoy's outlier detection. Sans-IO: ``now`` is an argument.

Theory of operation. Each instance is a small circuit breaker:

* ``closed``: in rotation. Consecutive failures (5xx answers, refused or reset connections) are
  counted; a success resets the count. At ``consecutive_failures`` the instance is ejected, unless
  that would put more than ``max_percent`` of the service's instances out (at least one may always go).
* ``open``: ejected until ``base * times_ejected`` seconds have passed (capped at ``max_ejection``),
  so an instance that keeps failing stays out longer each time.
* ``half_open``: the ejection time is over and the instance is back in rotation on probation: its
  first result decides. A success closes it; a failure ejects it again at once, for longer.

``times_ejected`` decays back to zero once an instance has stayed healthy for ``max_ejection``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class State(Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class EjectionPolicy:
    consecutive_failures: int = 5
    base_ejection: float = 30.0
    max_ejection: float = 300.0
    max_percent: int = 50


@dataclass(frozen=True, slots=True)
class Ejected:
    """An instance left rotation until ``until``."""

    key: str
    until: float
    times: int


@dataclass(slots=True)
class _Instance:
    state: State = State.CLOSED
    failures: int = 0
    until: float = 0.0
    times: int = 0
    last_ejected: float = 0.0


class OutlierDetector:
    """Ejection state for the instances of one service, keyed by instance ID."""

    def __init__(self, policy: EjectionPolicy) -> None:
        self.policy = policy
        self._instances: dict[str, _Instance] = {}
        self.disturbed = 0  # instances not closed: when 0, callers may skip per-instance checks

    def sync(self, keys: set[str]) -> None:
        """The service's instances changed: keep the state of those that stayed, forget the rest."""
        for key in list(self._instances):
            if key not in keys:
                del self._instances[key]
        for key in keys:
            self._instances.setdefault(key, _Instance())
        self.disturbed = sum(1 for i in self._instances.values() if i.state is not State.CLOSED)

    def available(self, key: str, now: float) -> bool:
        """Whether the instance may get a request now. An ejection that ran out moves it to half-open."""
        inst = self._instances.get(key)
        if inst is None or inst.state is not State.OPEN:
            return True
        if now < inst.until:
            return False
        inst.state = State.HALF_OPEN
        return True

    def state(self, key: str, now: float) -> State:
        self.available(key, now)
        inst = self._instances.get(key)
        return State.CLOSED if inst is None else inst.state

    def success(self, key: str, now: float) -> None:
        inst = self._instances.get(key)
        if inst is None:
            return
        inst.failures = 0
        if inst.state is State.HALF_OPEN:
            inst.state = State.CLOSED
            self.disturbed -= 1
        if inst.times and now - inst.last_ejected >= self.policy.max_ejection:
            inst.times = 0

    def failure(self, key: str, now: float) -> Ejected | None:
        """Count a failure; returns the ejection when this one takes the instance out of rotation."""
        inst = self._instances.get(key)
        if inst is None or inst.state is State.OPEN:
            return None
        inst.failures += 1
        if inst.state is State.HALF_OPEN or inst.failures >= self.policy.consecutive_failures:
            if inst.state is State.CLOSED and not self._may_eject(now):
                return None
            return self._eject(key, inst, now)
        return None

    def ejected(self, now: float) -> list[str]:
        return [k for k, i in self._instances.items() if i.state is State.OPEN and now < i.until]

    def _may_eject(self, now: float) -> bool:
        total = len(self._instances)
        out = len(self.ejected(now))
        allowed = max(1, total * self.policy.max_percent // 100)
        return out < allowed

    def _eject(self, key: str, inst: _Instance, now: float) -> Ejected:
        if inst.state is State.CLOSED:
            self.disturbed += 1
        inst.times += 1
        inst.failures = 0
        inst.state = State.OPEN
        inst.last_ejected = now
        inst.until = now + min(self.policy.base_ejection * inst.times, self.policy.max_ejection)
        return Ejected(key, inst.until, inst.times)
