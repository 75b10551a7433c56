"""The per-check state machine: probe results and clock readings in, decisions out. No I/O, no clock.

Theory of operation
-------------------
A result goes through three stages:

1. *Thresholds*, as Consul's ``StatusHandler``: a passing (or warning) result publishes only after
   ``SuccessBeforePassing`` consecutive successes; a critical result publishes warning after
   ``FailuresBeforeWarning`` consecutive failures and critical after ``FailuresBeforeCritical``.
   The counters start primed, so the very first result after registration counts at once.
2. *Flap damping*: every change of the status the thresholds produce is a flip. More than
   ``flap_threshold`` flips within ``flap_window`` seconds mark the check flapping: it keeps the
   status it had before the flips (its last stable status) and only its output follows the probes.
   Once the status has not flipped for half the window, the check settles and publishes the
   current status again. While flapping no status is written, so watchers are not woken.
3. *DeregisterCriticalServiceAfter*: when the published status has been critical for that long,
   :meth:`CheckMachine.tick` asks (once) for the service to be deregistered.

The machine returns effects; the runner turns them into catalog writes.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from roost.model import CheckDefinition, Status


@dataclass(frozen=True, slots=True)
class Thresholds:
    """What the machine needs from a check definition and the agent's flap settings."""

    success_before_passing: int = 0
    failures_before_warning: int = 0  # 0: same as failures_before_critical (Consul)
    failures_before_critical: int = 0
    deregister_after: float | None = None
    flap_threshold: int = 0  # 0 turns flap damping off
    flap_window: float = 60.0

    @classmethod
    def of(
        cls, definition: CheckDefinition, *, flap_threshold: int = 0, flap_window: float = 60.0
    ) -> Thresholds:
        return cls(
            success_before_passing=definition.success_before_passing,
            failures_before_warning=definition.failures_before_warning,
            failures_before_critical=definition.failures_before_critical,
            deregister_after=definition.deregister_after or None,
            flap_threshold=flap_threshold,
            flap_window=flap_window,
        )


@dataclass(frozen=True, slots=True)
class Report:
    """Publish this status and output. The catalog writes (and moves the index) only when the
    status or the flapping flag differs from what it holds; otherwise it keeps the output in memory."""

    status: Status
    output: str
    flapping: bool = False


@dataclass(frozen=True, slots=True)
class Deregister:
    """Deregister the check's service: it stayed critical longer than DeregisterCriticalServiceAfter."""

    reason: str


Effect = Report | Deregister


class CheckMachine:
    """One check's thresholds, flap damping and deregister-after timer.

    Args:
        limits: the thresholds and flap settings.
        status: the status the check has now (its initial status, or the one the catalog holds).
        now: the clock reading at creation, in seconds (any monotonic origin).
    """

    def __init__(self, limits: Thresholds, *, status: Status = Status.CRITICAL, now: float) -> None:
        self.limits = limits
        self.status = status  # what is published
        self.flapping = False
        self.output = ""
        self._raw = status  # what the thresholds say, before flap damping
        self._warn_after = limits.failures_before_warning or limits.failures_before_critical
        self._successes = limits.success_before_passing  # primed: the first result counts
        self._failures = max(limits.failures_before_critical, self._warn_after)
        self._flips: deque[float] = deque()
        self._last_flip: float | None = None
        self._critical_since: float | None = now if status is Status.CRITICAL else None
        self._asked = False

    # -- events ------------------------------------------------------------------------------

    def observe(self, result: Status, output: str, *, now: float) -> list[Effect]:
        """A probe result (or TTL heartbeat). Returns what to publish, if anything."""
        self.output = output
        target = self._threshold(result)
        if target is None:
            return self._settle(now)
        if target is not self._raw:
            self._raw = target
            self._flip(now)
        if self.flapping:
            settled = self._settle(now)
            return settled or [Report(self.status, output, True)]
        if self.limits.flap_threshold > 0 and len(self._flips) > self.limits.flap_threshold:
            self.flapping = True  # hold self.status: the last stable one
            return [Report(self.status, output, True)]
        self._publish(target, now)
        return [Report(target, output, False)]

    def tick(self, *, now: float) -> list[Effect]:
        """Time passed: a flapping check may settle; a long-critical service is deregistered."""
        effects = self._settle(now)
        after, since = self.limits.deregister_after, self._critical_since
        if after is not None and since is not None and not self._asked and now - since >= after:
            self._asked = True  # ask once per critical spell
            effects.append(Deregister(f"critical for more than {after:g}s"))
        return effects

    @property
    def needs_tick(self) -> bool:
        """Whether :meth:`tick` can return anything, so the runner only ticks the machines that do."""
        waiting = self._critical_since is not None and not self._asked
        return self.flapping or (self.limits.deregister_after is not None and waiting)

    # -- internals ---------------------------------------------------------------------------

    def _threshold(self, result: Status) -> Status | None:
        limits = self.limits
        if result in (Status.PASSING, Status.WARNING):
            self._successes, self._failures = self._successes + 1, 0
            return result if self._successes >= limits.success_before_passing else None
        self._failures, self._successes = self._failures + 1, 0
        if self._failures >= limits.failures_before_critical:
            return Status.CRITICAL
        if self._failures >= self._warn_after:
            return Status.WARNING
        return None

    def _flip(self, now: float) -> None:
        self._last_flip = now
        self._flips.append(now)
        horizon = now - self.limits.flap_window
        while self._flips and self._flips[0] <= horizon:
            self._flips.popleft()

    def _settle(self, now: float) -> list[Effect]:
        if not self.flapping:
            return []
        quiet = self.limits.flap_window / 2
        if self._last_flip is not None and now - self._last_flip < quiet:
            return []
        self.flapping = False
        self._flips.clear()
        self._publish(self._raw, now)
        return [Report(self._raw, self.output, False)]

    def _publish(self, status: Status, now: float) -> None:
        if status is not Status.CRITICAL:
            self._critical_since, self._asked = None, False
        elif self.status is not Status.CRITICAL:
            self._critical_since = now
        self.status = status
