"""The per-instance circuit breaker, driven with numbers for time."""

from __future__ import annotations

import pytest

from roost.client.breaker import BreakerConfig, Breakers, BreakerState, CircuitBreaker


def breaker(**kw: float) -> CircuitBreaker:
    return CircuitBreaker(BreakerConfig(**kw))  # type: ignore[arg-type]


def test_opens_after_consecutive_failures() -> None:
    """Three consecutive failures open a breaker with threshold 3; it then refuses requests."""
    b = breaker(failure_threshold=3, open_timeout=5.0)
    for t in range(2):
        b.record_failure(float(t))
        assert b.allow(float(t))
    b.record_failure(2.0)
    assert b.state is BreakerState.OPEN
    assert not b.allow(3.0)


def test_a_success_resets_the_consecutive_count() -> None:
    """Failures separated by a success do not open the breaker."""
    b = breaker(failure_threshold=3, min_requests=100)
    for t in range(10):
        b.record_failure(t + 0.1)
        b.record_failure(t + 0.2)
        b.record_success(t + 0.3)
    assert b.state is BreakerState.CLOSED


def test_half_open_after_timeout_allows_one_probe() -> None:
    """After the open timeout one probe goes through; concurrent requests are still refused."""
    b = breaker(failure_threshold=1, open_timeout=5.0)
    b.record_failure(0.0)
    assert not b.allow(4.9)
    assert b.allow(5.0)
    assert b.state is BreakerState.HALF_OPEN
    assert not b.allow(5.1)


def test_probe_success_closes_after_success_threshold() -> None:
    """Two successful probes close a breaker whose success threshold is 2."""
    b = breaker(failure_threshold=1, open_timeout=1.0, success_threshold=2, half_open_max=1)
    b.record_failure(0.0)
    assert b.allow(1.0)
    b.record_success(1.1)
    assert b.state is BreakerState.HALF_OPEN
    assert b.allow(1.2)
    b.record_success(1.3)
    assert b.state is BreakerState.CLOSED
    assert b.allow(1.4)


def test_probe_failure_reopens_and_restarts_the_timeout() -> None:
    """A failed probe opens the breaker again for a full open timeout."""
    b = breaker(failure_threshold=1, open_timeout=2.0)
    b.record_failure(0.0)
    assert b.allow(2.0)
    b.record_failure(2.5)
    assert b.state is BreakerState.OPEN
    assert not b.allow(4.0)
    assert b.allow(4.5)


def test_lost_probe_frees_its_slot_after_the_timeout() -> None:
    """A probe that never reports back stops blocking other probes after open_timeout."""
    b = breaker(failure_threshold=1, open_timeout=1.0)
    b.record_failure(0.0)
    assert b.allow(1.0)
    assert not b.allow(1.5)
    assert b.allow(2.0)


def test_error_rate_over_the_window_opens() -> None:
    """Alternating success and failure trips at a 50% error rate once min_requests results are in."""
    b = breaker(failure_threshold=100, error_rate=0.5, min_requests=10, window=10.0)
    for i in range(4):
        b.record_success(i * 0.1)
        b.record_failure(i * 0.1 + 0.05)
    assert b.state is BreakerState.CLOSED
    b.record_success(0.5)
    b.record_failure(0.55)
    assert b.state is BreakerState.OPEN


def test_old_results_leave_the_window() -> None:
    """Failures older than the window no longer count toward the error rate."""
    b = breaker(failure_threshold=100, error_rate=0.5, min_requests=10, window=10.0)
    for i in range(9):
        b.record_failure(i * 0.01)
        b.record_success(i * 0.01 + 0.001)  # keep the consecutive count low
    stats = b.stats(30.0)
    assert stats.failures == 0 and stats.successes == 0
    assert stats.success_rate == 1.0
    for i in range(5):
        b.record_success(30.0 + i)
    b.record_failure(36.0)
    assert b.state is BreakerState.CLOSED


def test_stats_report_counts_and_rate() -> None:
    """stats() gives the state, window counts, success rate and totals."""
    b = breaker(failure_threshold=2, min_requests=100)
    b.record_success(0.0)
    b.record_success(0.1)
    b.record_success(0.2)
    b.record_failure(0.3)
    s = b.stats(0.4)
    assert (s.state, s.successes, s.failures, s.consecutive_failures) == (BreakerState.CLOSED, 3, 1, 1)
    assert s.success_rate == pytest.approx(0.75)
    b.record_failure(0.5)
    s = b.stats(0.6)
    assert s.state is BreakerState.OPEN and s.times_opened == 1 and s.total_failures == 2


def test_breakers_keeps_one_per_key_and_lists_available() -> None:
    """Breakers creates a breaker per instance key and lists the keys that accept requests."""
    breakers = Breakers(BreakerConfig(failure_threshold=1, open_timeout=1.0))
    breakers["web/a"].record_failure(0.0)
    assert breakers.available_keys(["web/a", "web/b"], 0.5) == ["web/b"]
    assert breakers.available_keys(["web/a", "web/b"], 1.5) == ["web/a", "web/b"]
    breakers.forget({"web/b"})
    assert breakers.get("web/a") is None


def test_config_rejects_nonsense() -> None:
    """Thresholds below one are refused."""
    with pytest.raises(ValueError):
        BreakerConfig(failure_threshold=0)
