"""Per-instance circuit breakers. Sans-IO: every method takes ``now``; nothing here reads a clock.

Why not a library: pybreaker (1.4) wraps calls (``breaker.call(f)``) rather than taking outcomes,
reads ``datetime.now()`` itself (so tests cannot drive time), and trips only on consecutive failures
(no sliding-window error rate, no cap on half-open probes). aiobreaker is pybreaker's asyncio fork
with the same model, and purgatory keys breakers by name through an async store with its own
clock. The client and the gateway need a breaker per instance that is fed results by a transport,
driven by a clock they own, and cheap enough to consult on every pick, so the core is written here
as a small table-driven state machine (about 150 lines).

Theory of operation::

    CLOSED --(consecutive failures >= failure_threshold, or error rate over the window
              >= error_rate with at least min_requests)--> OPEN
    OPEN --(open_timeout passed; checked in allow())--> HALF_OPEN
    HALF_OPEN --(success_threshold successes)--> CLOSED
    HALF_OPEN --(any failure)--> OPEN (the timeout starts again)

In HALF_OPEN at most ``half_open_max`` probe requests are let through at once; the rest are refused
as if OPEN. A probe that never reports back (the caller was cancelled) frees its slot after
``open_timeout``. The sliding window is ``buckets`` time buckets over ``window`` seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class _Event(StrEnum):
    TRIP = "trip"  # failure threshold or error rate reached
    TIMEOUT = "timeout"  # open_timeout passed
    PROBE_FAILED = "probe_failed"
    RECOVERED = "recovered"  # success_threshold probes succeeded


# Rule: every state change goes through this table; a missing key is a bug, not a no-op.
_TRANSITIONS: dict[tuple[BreakerState, _Event], BreakerState] = {
    (BreakerState.CLOSED, _Event.TRIP): BreakerState.OPEN,
    (BreakerState.OPEN, _Event.TIMEOUT): BreakerState.HALF_OPEN,
    (BreakerState.HALF_OPEN, _Event.PROBE_FAILED): BreakerState.OPEN,
    (BreakerState.HALF_OPEN, _Event.RECOVERED): BreakerState.CLOSED,
}


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """Thresholds of one breaker. Durations are seconds."""

    failure_threshold: int = 5  # consecutive failures that open the breaker
    success_threshold: int = 1  # half-open successes that close it
    open_timeout: float = 5.0  # how long it stays open before probing
    window: float = 10.0  # sliding window for the error rate
    buckets: int = 10
    error_rate: float = 0.5  # failure share over the window that opens it (1.0 turns this off)
    min_requests: int = 20  # ... once the window holds at least this many results
    half_open_max: int = 1  # probes in flight at once while half-open

    def __post_init__(self) -> None:
        if self.failure_threshold < 1 or self.success_threshold < 1 or self.half_open_max < 1:
            raise ValueError("breaker thresholds must be at least 1")
        if self.open_timeout <= 0 or self.window <= 0 or self.buckets < 1:
            raise ValueError("breaker durations must be positive")


@dataclass(frozen=True, slots=True)
class BreakerStats:
    state: BreakerState
    successes: int  # over the sliding window
    failures: int
    success_rate: float  # 1.0 with no results in the window
    consecutive_failures: int
    times_opened: int
    total_successes: int
    total_failures: int


class CircuitBreaker:
    """One instance's breaker. Call :meth:`allow` before sending and one ``record_*`` after."""

    def __init__(
        self,
        config: BreakerConfig | None = None,
        on_state: Callable[[BreakerState], None] | None = None,
    ) -> None:
        self.config = config or BreakerConfig()
        self.on_state = on_state  # called after every state change
        self._state = BreakerState.CLOSED
        self._opened_at = 0.0
        self._consecutive_failures = 0
        self._half_open_successes = 0
        self._probes: list[float] = []  # start times of half-open probes in flight
        width = self.config.window / self.config.buckets
        self._width = width
        self._epoch = [-1] * self.config.buckets  # which time slot each bucket currently counts
        self._ok = [0] * self.config.buckets
        self._bad = [0] * self.config.buckets
        self.times_opened = 0
        self.total_successes = 0
        self.total_failures = 0

    @property
    def state(self) -> BreakerState:
        """The state as of the last call; use :meth:`state_at` to include an elapsed open timeout."""
        return self._state

    def state_at(self, now: float) -> BreakerState:
        self._tick(now)
        return self._state

    def _move(self, event: _Event, now: float) -> None:
        self._state = _TRANSITIONS[(self._state, event)]
        if self._state is BreakerState.OPEN:
            self._opened_at = now
            self.times_opened += 1
            self._probes.clear()
        elif self._state is BreakerState.HALF_OPEN:
            self._half_open_successes = 0
            self._probes.clear()
        else:  # CLOSED: start afresh
            self._consecutive_failures = 0
            self._ok = [0] * self.config.buckets
            self._bad = [0] * self.config.buckets
        if self.on_state is not None:
            self.on_state(self._state)

    def _tick(self, now: float) -> None:
        if self._state is BreakerState.OPEN and now - self._opened_at >= self.config.open_timeout:
            self._move(_Event.TIMEOUT, now)

    def allow(self, now: float) -> bool:
        """Whether a request may go to this instance now. In half-open, True reserves a probe slot."""
        self._tick(now)
        if self._state is BreakerState.CLOSED:
            return True
        if self._state is BreakerState.OPEN:
            return False
        self._probes = [t for t in self._probes if now - t < self.config.open_timeout]
        if len(self._probes) >= self.config.half_open_max:
            return False
        self._probes.append(now)
        return True

    def available(self, now: float) -> bool:
        """Like :meth:`allow` but reserves nothing: would a request be let through?"""
        self._tick(now)
        if self._state is BreakerState.CLOSED:
            return True
        if self._state is BreakerState.OPEN:
            return False
        live = sum(1 for t in self._probes if now - t < self.config.open_timeout)
        return live < self.config.half_open_max

    def _bucket(self, now: float) -> int:
        slot = int(now // self._width)
        i = slot % self.config.buckets
        if self._epoch[i] != slot:
            self._epoch[i], self._ok[i], self._bad[i] = slot, 0, 0
        return i

    def _window(self, now: float) -> tuple[int, int]:
        slot = int(now // self._width)
        ok = bad = 0
        for i in range(self.config.buckets):
            if slot - self._epoch[i] < self.config.buckets:
                ok += self._ok[i]
                bad += self._bad[i]
        return ok, bad

    def record_success(self, now: float) -> None:
        self._tick(now)
        self.total_successes += 1
        self._consecutive_failures = 0
        if self._state is BreakerState.HALF_OPEN:
            if self._probes:
                self._probes.pop(0)
            self._half_open_successes += 1
            if self._half_open_successes >= self.config.success_threshold:
                self._move(_Event.RECOVERED, now)
            return
        if self._state is BreakerState.CLOSED:
            self._ok[self._bucket(now)] += 1

    def record_failure(self, now: float) -> None:
        self._tick(now)
        self.total_failures += 1
        self._consecutive_failures += 1
        if self._state is BreakerState.HALF_OPEN:
            self._move(_Event.PROBE_FAILED, now)
            return
        if self._state is not BreakerState.CLOSED:
            return  # a late result of a request sent before the breaker opened
        self._bad[self._bucket(now)] += 1
        if self._consecutive_failures >= self.config.failure_threshold:
            self._move(_Event.TRIP, now)
            return
        ok, bad = self._window(now)
        total = ok + bad
        rate = self.config.error_rate
        if rate < 1.0 and total >= self.config.min_requests and bad / total >= rate:
            self._move(_Event.TRIP, now)

    def stats(self, now: float) -> BreakerStats:
        self._tick(now)
        ok, bad = self._window(now)
        return BreakerStats(
            state=self._state,
            successes=ok,
            failures=bad,
            success_rate=ok / (ok + bad) if ok + bad else 1.0,
            consecutive_failures=self._consecutive_failures,
            times_opened=self.times_opened,
            total_successes=self.total_successes,
            total_failures=self.total_failures,
        )


class Breakers:
    """A breaker per instance key, created on first use with one shared config."""

    def __init__(self, config: BreakerConfig | None = None) -> None:
        self.config = config or BreakerConfig()
        self._by_key: dict[str, CircuitBreaker] = {}
        # Keys whose breaker is not closed: when empty (the usual case) callers can skip the checks.
        self.tripped: set[str] = set()

    def __getitem__(self, key: str) -> CircuitBreaker:
        breaker = self._by_key.get(key)
        if breaker is None:

            def track(state: BreakerState) -> None:
                if state is BreakerState.CLOSED:
                    self.tripped.discard(key)
                else:
                    self.tripped.add(key)

            breaker = self._by_key[key] = CircuitBreaker(self.config, track)
        return breaker

    def get(self, key: str) -> CircuitBreaker | None:
        return self._by_key.get(key)

    def available_keys(self, keys: Iterable[str], now: float) -> list[str]:
        """The keys whose breaker would let a request through (no breaker yet counts as closed)."""
        out = []
        for key in keys:
            b = self._by_key.get(key)
            if b is None or b.available(now):
                out.append(key)
        return out

    def forget(self, keep: set[str]) -> None:
        for key in [k for k in self._by_key if k not in keep]:
            del self._by_key[key]
            self.tripped.discard(key)

    def stats(self, now: float) -> dict[str, BreakerStats]:
        return {key: b.stats(now) for key, b in self._by_key.items()}
