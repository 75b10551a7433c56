"""Backoff with full jitter and the retry budget, with numbers for time."""

from __future__ import annotations

import random

from roost.client.retry import Backoff, RetryBudget


def test_backoff_ceiling_doubles_up_to_the_cap() -> None:
    """Delays stay under base * 2**n and never exceed the cap."""
    backoff = Backoff(base=0.1, cap=1.0, rng=random.Random(1))
    for n in range(12):
        assert 0 <= backoff.next_delay() <= min(1.0, 0.1 * 2**n)
    backoff.reset()
    assert backoff.next_delay() <= 0.1


def test_backoff_spreads_many_clients() -> None:
    """A thousand clients reconnecting after the same failure do not pick the same moment."""
    rng = random.Random(2)
    delays = sorted(Backoff(base=1.0, cap=10.0, rng=rng, attempt=3).next_delay() for _ in range(1000))
    # Full jitter: about uniform over [0, 8]; no 100 ms slot holds more than a few percent of clients.
    buckets = [0] * 80
    for d in delays:
        buckets[min(int(d * 10), 79)] += 1
    assert max(buckets) < 40


def test_budget_caps_retries_at_a_share_of_requests() -> None:
    """With ratio 0.2 and no floor, 100 requests allow 20 retries and no more."""
    budget = RetryBudget(ratio=0.2, min_per_second=0.0, ttl=10.0)
    for _ in range(100):
        budget.record_request(0.0)
    allowed = sum(budget.try_withdraw(1.0) for _ in range(50))
    assert allowed == 20


def test_budget_floor_allows_a_few_retries_when_quiet() -> None:
    """min_per_second lets a quiet client retry even with no recent requests."""
    budget = RetryBudget(ratio=0.2, min_per_second=1.0, ttl=5.0)
    assert sum(budget.try_withdraw(0.0) for _ in range(10)) == 5


def test_budget_deposits_expire() -> None:
    """Requests older than ttl no longer fund retries."""
    budget = RetryBudget(ratio=1.0, min_per_second=0.0, ttl=10.0)
    for _ in range(10):
        budget.record_request(0.0)
    assert budget.can_retry(5.0)
    assert not budget.can_retry(10.5)
