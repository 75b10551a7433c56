"""Load-balancing policies. Sans-IO: time is an argument and randomness is injected.

Every policy satisfies :class:`Policy`. A caller (the client's transport, the gateway) does::

    inst = policy.pick(candidates, now)          # candidates: non-empty, breakers already applied
    policy.on_start(inst, now)                    # one request in flight
    ...                                           # send it
    policy.on_result(inst, now=t1, latency=t1 - t0, ok=..., retry_after=...)

``on_start``/``on_result`` must be paired: least-outstanding and p2c-EWMA count requests in flight.
Per-instance state is kept under :attr:`Instance.key` and dropped by :meth:`Policy.forget`.

Policies:

* ``round_robin``: each instance in turn (order of the candidate list).
* ``random``: uniform.
* ``weighted``: random in proportion to :attr:`Instance.weight` (Consul Weights, SRV weight).
* ``least_outstanding``: fewest requests in flight; ties broken at random.
* ``p2c_ewma``: power of two choices over a peak-EWMA of latency, after Finagle's ``PeakEwma`` and
  Linkerd's balancer. Cost = ewma_latency * (in_flight + 1). A new observation above the average
  replaces it at once (the peak); below it the average decays with ``exp(-dt / decay)``. Failures are
  recorded as ``max(latency, failure_penalty)``, so a backend that fails fast does not look fast, and
  an instance that answered ``Retry-After`` is avoided until then (unless nothing else is left).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from roost.client.instance import Instance
from roost.errors import NoHealthyInstance


class Policy(Protocol):
    """How one instance is chosen from the candidates. Implementations are not thread-safe."""

    name: str

    def pick(self, instances: Sequence[Instance], now: float) -> Instance:
        """Choose one of ``instances`` (non-empty). Raises NoHealthyInstance when it is empty."""
        ...

    def on_start(self, instance: Instance, now: float) -> None:
        """A request to ``instance`` was sent."""
        ...

    def on_result(
        self,
        instance: Instance,
        *,
        now: float,
        latency: float,
        ok: bool,
        retry_after: float | None = None,
    ) -> None:
        """The request finished after ``latency`` seconds; ``ok`` is False for errors, timeouts, 5xx."""
        ...

    def forget(self, keep: set[str]) -> None:
        """Drop state for every instance key not in ``keep`` (the instance left the service)."""
        ...


def _nonempty(instances: Sequence[Instance]) -> None:
    if not instances:
        raise NoHealthyInstance("", "no instance to pick from")


class _Stateless:
    name = "stateless"

    def on_start(self, instance: Instance, now: float) -> None:
        pass

    def on_result(
        self, instance: Instance, *, now: float, latency: float, ok: bool, retry_after: float | None = None
    ) -> None:
        pass

    def forget(self, keep: set[str]) -> None:
        pass


class RoundRobin(_Stateless):
    """Each instance in turn. The counter is shared by all lists passed in, which is what callers want
    when the list changes slightly (an instance joins): the rotation carries on."""

    name = "round_robin"

    def __init__(self, rng: random.Random | None = None) -> None:
        # Start at a random offset so that many clients do not all hit the first instance together.
        self._next = (rng or random.Random()).randrange(1 << 16)

    def pick(self, instances: Sequence[Instance], now: float) -> Instance:
        _nonempty(instances)
        self._next += 1
        return instances[self._next % len(instances)]


class RandomPolicy(_Stateless):
    name = "random"

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def pick(self, instances: Sequence[Instance], now: float) -> Instance:
        _nonempty(instances)
        return instances[self._rng.randrange(len(instances))]


class Weighted(_Stateless):
    """Random in proportion to weight (an instance with weight 3 gets three times the traffic of 1)."""

    name = "weighted"

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def pick(self, instances: Sequence[Instance], now: float) -> Instance:
        _nonempty(instances)
        total = sum(max(i.weight, 0) for i in instances)
        if total <= 0:
            return instances[self._rng.randrange(len(instances))]
        point = self._rng.random() * total
        for inst in instances:
            point -= max(inst.weight, 0)
            if point < 0:
                return inst
        return instances[-1]


class _InFlight:
    def __init__(self) -> None:
        self.in_flight: dict[str, int] = {}

    def on_start(self, instance: Instance, now: float) -> None:
        self.in_flight[instance.key] = self.in_flight.get(instance.key, 0) + 1

    def _done(self, instance: Instance) -> None:
        n = self.in_flight.get(instance.key, 0)
        if n > 1:
            self.in_flight[instance.key] = n - 1
        else:
            self.in_flight.pop(instance.key, None)


class LeastOutstanding(_InFlight):
    """Fewest requests in flight; ties are broken at random so equal instances share the load."""

    name = "least_outstanding"

    def __init__(self, rng: random.Random | None = None) -> None:
        super().__init__()
        self._rng = rng or random.Random()

    def pick(self, instances: Sequence[Instance], now: float) -> Instance:
        _nonempty(instances)
        best = min(self.in_flight.get(i.key, 0) for i in instances)
        ties = [i for i in instances if self.in_flight.get(i.key, 0) == best]
        return ties[self._rng.randrange(len(ties))] if len(ties) > 1 else ties[0]

    def on_result(
        self, instance: Instance, *, now: float, latency: float, ok: bool, retry_after: float | None = None
    ) -> None:
        self._done(instance)

    def forget(self, keep: set[str]) -> None:
        for key in [k for k in self.in_flight if k not in keep]:
            del self.in_flight[key]


@dataclass(slots=True)
class _Ewma:
    cost: float  # seconds
    stamp: float  # when cost was last updated
    avoid_until: float = 0.0  # Retry-After


class PeakEwma(_InFlight):
    """Power of two choices over a peak-EWMA of latency (see the module docstring).

    Args:
        rng: the source of the two random choices.
        decay: seconds over which an old latency loses weight (Finagle's default is 10 s).
        default_latency: the cost of an instance not yet measured. Low, so new instances get tried.
        failure_penalty: the latency an error counts as, at least.
    """

    name = "p2c_ewma"

    def __init__(
        self,
        rng: random.Random | None = None,
        *,
        decay: float = 10.0,
        default_latency: float = 0.001,
        failure_penalty: float = 1.0,
    ) -> None:
        super().__init__()
        self._rng = rng or random.Random()
        self.decay = decay
        self.default_latency = default_latency
        self.failure_penalty = failure_penalty
        self._stats: dict[str, _Ewma] = {}

    def cost(self, instance: Instance, now: float) -> float:
        """The load score p2c compares: lower is better; ``inf`` while a Retry-After holds."""
        st = self._stats.get(instance.key)
        outstanding = self.in_flight.get(instance.key, 0)
        if st is None:
            return self.default_latency * (outstanding + 1)
        if now < st.avoid_until:
            return math.inf
        return self._decayed(st, now) * (outstanding + 1)

    def _decayed(self, st: _Ewma, now: float) -> float:
        # With no new observations the cost drifts back toward the default, so an instance once slow
        # is tried again eventually instead of being starved forever.
        dt = max(now - st.stamp, 0.0)
        w = math.exp(-dt / self.decay)
        return st.cost * w + self.default_latency * (1 - w)

    def pick(self, instances: Sequence[Instance], now: float) -> Instance:
        _nonempty(instances)
        n = len(instances)
        if n == 1:
            return instances[0]
        a = self._rng.randrange(n)
        b = self._rng.randrange(n - 1)
        if b >= a:
            b += 1
        ia, ib = instances[a], instances[b]
        ca, cb = self.cost(ia, now), self.cost(ib, now)
        if ca == cb == math.inf:
            return self._least_avoided(instances)
        return ia if ca <= cb else ib

    def _least_avoided(self, instances: Sequence[Instance]) -> Instance:
        return min(instances, key=lambda i: st.avoid_until if (st := self._stats.get(i.key)) else 0.0)

    def on_result(
        self, instance: Instance, *, now: float, latency: float, ok: bool, retry_after: float | None = None
    ) -> None:
        self._done(instance)
        rtt = latency if ok else max(latency, self.failure_penalty)
        st = self._stats.get(instance.key)
        if st is None:
            st = self._stats[instance.key] = _Ewma(rtt, now)
        elif rtt > st.cost:
            st.cost, st.stamp = rtt, now  # peak: jump up at once
        else:
            dt = max(now - st.stamp, 0.0)
            w = math.exp(-dt / self.decay)
            st.cost, st.stamp = st.cost * w + rtt * (1 - w), now
        if retry_after is not None and retry_after > 0:
            st.avoid_until = max(st.avoid_until, now + retry_after)

    def forget(self, keep: set[str]) -> None:
        for table in (self.in_flight, self._stats):
            for key in [k for k in table if k not in keep]:
                del table[key]


POLICIES: dict[str, Callable[[random.Random | None], Policy]] = {
    "round_robin": RoundRobin,
    "random": RandomPolicy,
    "weighted": Weighted,
    "least_outstanding": LeastOutstanding,
    "p2c_ewma": PeakEwma,
}


def make_policy(name: str, rng: random.Random | None = None) -> Policy:
    """A new policy by name (``round_robin``, ``random``, ``weighted``, ``least_outstanding``, ``p2c_ewma``;
    ``-`` works in place of ``_``)."""
    try:
        factory = POLICIES[name.replace("-", "_").lower()]
    except KeyError:
        raise ValueError(
            f"unknown load-balancing policy {name!r}; choose from {', '.join(POLICIES)}"
        ) from None
    return factory(rng)
