"""The check state machine: thresholds, flap damping and deregister-after, driven with plain numbers."""

from __future__ import annotations

from roost.health.checks import CheckMachine, Deregister, Report, Thresholds
from roost.model import CheckDefinition, CheckKind, Status

P, W, C = Status.PASSING, Status.WARNING, Status.CRITICAL


def feed(
    machine: CheckMachine, results: list[Status], *, start: float = 0.0, step: float = 1.0
) -> list[Status]:
    """The published status after each result."""
    out = []
    for i, result in enumerate(results):
        machine.observe(result, f"r{i}", now=start + i * step)
        out.append(machine.status)
    return out


def test_first_result_counts_at_once() -> None:
    """With thresholds, the counters start primed: the first probe after registration publishes."""
    machine = CheckMachine(Thresholds(success_before_passing=3, failures_before_critical=3), now=0)
    assert machine.observe(P, "ok", now=0) == [Report(P, "ok", False)]


def test_success_before_passing() -> None:
    """After a failure, it takes SuccessBeforePassing consecutive successes to pass again."""
    machine = CheckMachine(Thresholds(success_before_passing=3), status=P, now=0)
    assert feed(machine, [C, P, P, P]) == [C, C, C, P]


def test_success_streak_is_reset_by_a_failure() -> None:
    """A failure in the middle of a success streak starts the count again."""
    machine = CheckMachine(Thresholds(success_before_passing=2), status=P, now=0)
    assert feed(machine, [C, P, C, P, P]) == [C, C, C, C, P]


def test_failures_before_critical() -> None:
    """A passing check turns critical only after FailuresBeforeCritical consecutive failures."""
    machine = CheckMachine(Thresholds(failures_before_critical=3), status=P, now=0)
    machine.observe(P, "ok", now=0)
    assert feed(machine, [C, C, C]) == [P, P, C]


def test_failures_before_warning_then_critical() -> None:
    """FailuresBeforeWarning publishes warning before FailuresBeforeCritical publishes critical."""
    machine = CheckMachine(Thresholds(failures_before_warning=1, failures_before_critical=3), status=P, now=0)
    machine.observe(P, "ok", now=0)
    assert feed(machine, [C, C, C, P]) == [W, W, C, P]


def test_warning_defaults_to_critical_threshold() -> None:
    """Without FailuresBeforeWarning, there is no warning stage (Consul's default)."""
    machine = CheckMachine(Thresholds(failures_before_critical=2), status=P, now=0)
    machine.observe(P, "ok", now=0)
    assert feed(machine, [C, C]) == [P, C]


def test_warning_result_counts_as_success() -> None:
    """A warning result (HTTP 429) publishes warning and counts as a success, as in Consul."""
    machine = CheckMachine(Thresholds(failures_before_critical=2), status=P, now=0)
    machine.observe(P, "ok", now=0)
    assert feed(machine, [C, W, C]) == [P, W, W]


def test_below_threshold_publishes_nothing() -> None:
    """A result that does not reach its threshold yields no report at all."""
    machine = CheckMachine(Thresholds(failures_before_critical=2), status=P, now=0)
    machine.observe(P, "ok", now=0)
    assert machine.observe(C, "bad", now=1) == []


def test_unchanged_status_still_reports_output() -> None:
    """A result that keeps the status still reports, so the output stays current (kept in memory)."""
    machine = CheckMachine(Thresholds(), status=P, now=0)
    assert machine.observe(P, "second", now=1) == [Report(P, "second", False)]


def test_flapping_holds_last_stable_status() -> None:
    """More than flap_threshold flips within the window mark the check flapping at its last stable status."""
    machine = CheckMachine(Thresholds(flap_threshold=3, flap_window=60), status=P, now=0)
    machine.observe(P, "ok", now=0)
    assert feed(machine, [C, P, C], start=1) == [C, P, C]  # three flips: still allowed
    effects = machine.observe(P, "ok again", now=4)  # the fourth flip
    assert effects == [Report(C, "ok again", True)]
    assert machine.flapping and machine.status is C
    assert machine.observe(C, "x", now=5) == [Report(C, "x", True)]
    assert machine.observe(P, "y", now=6) == [Report(C, "y", True)]


def test_flips_outside_the_window_do_not_count() -> None:
    """Flips spread wider than the window never mark a check flapping."""
    machine = CheckMachine(Thresholds(flap_threshold=2, flap_window=10), status=P, now=0)
    statuses = feed(machine, [C, P, C, P, C, P], start=0, step=6)
    assert statuses == [C, P, C, P, C, P]
    assert not machine.flapping


def test_flapping_settles_after_quiet_half_window() -> None:
    """A flapping check settles once its status has not flipped for half the window, and then
    publishes the status it has now."""
    machine = CheckMachine(Thresholds(flap_threshold=2, flap_window=20), status=P, now=0)
    feed(machine, [C, P, C], start=1)  # the third flip at t=3 starts flapping, holding passing
    assert machine.flapping and machine.status is P
    assert machine.observe(C, "still bad", now=8) == [Report(P, "still bad", True)]
    assert machine.tick(now=12.9) == []
    assert machine.tick(now=13) == [Report(C, "still bad", False)]
    assert not machine.flapping and machine.status is C


def test_flapping_settles_on_observe_too() -> None:
    """A probe result after the quiet period settles the check without waiting for a tick."""
    machine = CheckMachine(Thresholds(flap_threshold=1, flap_window=4), status=P, now=0)
    feed(machine, [C, P], start=1)
    assert machine.flapping
    assert machine.observe(P, "fine", now=4) == [Report(P, "fine", False)]


def test_flap_damping_off_with_zero_threshold() -> None:
    """flap_threshold 0 turns damping off: every flip publishes."""
    machine = CheckMachine(Thresholds(flap_threshold=0), status=P, now=0)
    assert feed(machine, [C, P] * 10) == [C, P] * 10


def test_flapping_writes_only_when_entering_and_leaving() -> None:
    """While flapping the reported status and flag never change, so the catalog writes nothing."""
    machine = CheckMachine(Thresholds(flap_threshold=2, flap_window=100), status=P, now=0)
    reports: list[tuple[Status, bool]] = []
    for i in range(40):
        for effect in machine.observe(C if i % 2 else P, "", now=i):
            assert isinstance(effect, Report)
            reports.append((effect.status, effect.flapping))
    changes = [r for prev, r in zip([(P, False), *reports], reports, strict=False) if prev != r]
    assert changes == [(C, False), (P, False), (P, True)]


def test_deregister_after_critical_period() -> None:
    """A check critical for DeregisterCriticalServiceAfter asks for deregistration, once."""
    machine = CheckMachine(Thresholds(deregister_after=30), status=P, now=0)
    machine.observe(C, "down", now=10)
    assert machine.needs_tick
    assert machine.tick(now=39.9) == []
    assert machine.tick(now=40) == [Deregister("critical for more than 30s")]
    assert machine.tick(now=50) == []
    assert not machine.needs_tick


def test_recovery_resets_deregister_timer() -> None:
    """Passing again before the deadline cancels the deregistration; the next critical spell starts anew."""
    machine = CheckMachine(Thresholds(deregister_after=30), status=P, now=0)
    machine.observe(C, "down", now=0)
    machine.observe(P, "up", now=20)
    assert not machine.needs_tick
    machine.observe(C, "down", now=25)
    assert machine.tick(now=50) == []
    assert machine.tick(now=55) == [Deregister("critical for more than 30s")]


def test_initially_critical_counts_from_creation() -> None:
    """A check that starts critical (Consul's default) counts its critical time from creation."""
    machine = CheckMachine(Thresholds(deregister_after=5), now=100)
    assert machine.tick(now=105) == [Deregister("critical for more than 5s")]


def test_no_deregister_without_setting() -> None:
    """Without DeregisterCriticalServiceAfter nothing is ever deregistered and no tick is needed."""
    machine = CheckMachine(Thresholds(), now=0)
    assert not machine.needs_tick
    assert machine.tick(now=1e9) == []


def test_thresholds_from_definition() -> None:
    """Thresholds.of reads the definition's counters and the agent's flap settings."""
    d = CheckDefinition(
        "c",
        "c",
        CheckKind.HTTP,
        interval=1,
        success_before_passing=2,
        failures_before_warning=1,
        failures_before_critical=4,
        deregister_after=90,
    )
    assert Thresholds.of(d, flap_threshold=5, flap_window=30) == Thresholds(2, 1, 4, 90, 5, 30)
