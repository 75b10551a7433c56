"""Load-balancing policies, driven with seeded randomness and numbers for time."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from roost.client.balance import LeastOutstanding, PeakEwma, RandomPolicy, RoundRobin, Weighted, make_policy
from roost.client.instance import Instance
from roost.errors import NoHealthyInstance

A, B, C = (Instance("web", n, "127.0.0.1", 8000 + i) for i, n in enumerate("abc"))


def test_round_robin_visits_each_instance_in_turn() -> None:
    """Round robin gives every instance exactly one pick per cycle."""
    policy = RoundRobin(random.Random(1))
    picks = [policy.pick([A, B, C], 0.0).id for _ in range(9)]
    assert Counter(picks) == {"a": 3, "b": 3, "c": 3}
    assert picks[0:3] == picks[3:6]


def test_random_is_roughly_uniform() -> None:
    """Random spreads picks evenly over many draws."""
    policy = RandomPolicy(random.Random(2))
    counts = Counter(policy.pick([A, B, C], 0.0).id for _ in range(3000))
    assert all(800 < n < 1200 for n in counts.values())


def test_weighted_follows_weights() -> None:
    """An instance with weight 3 gets about three times the picks of one with weight 1."""
    heavy = Instance("web", "h", "127.0.0.1", 1, weight=3)
    light = Instance("web", "l", "127.0.0.1", 2, weight=1)
    zero = Instance("web", "z", "127.0.0.1", 3, weight=0)
    policy = Weighted(random.Random(3))
    counts = Counter(policy.pick([heavy, light, zero], 0.0).id for _ in range(4000))
    assert counts["z"] == 0
    assert 2.5 < counts["h"] / counts["l"] < 3.5


def test_least_outstanding_prefers_idle_instances() -> None:
    """Least-outstanding picks the instance with the fewest requests in flight."""
    policy = LeastOutstanding(random.Random(4))
    policy.on_start(A, 0.0)
    policy.on_start(A, 0.0)
    policy.on_start(B, 0.0)
    assert policy.pick([A, B, C], 0.0) is C
    policy.on_start(C, 0.0)
    policy.on_start(C, 0.0)
    assert policy.pick([A, B, C], 0.0) is B
    policy.on_result(A, now=1.0, latency=1.0, ok=True)
    policy.on_result(A, now=1.0, latency=1.0, ok=True)
    assert policy.pick([A, B, C], 1.0) is A


def test_p2c_ewma_avoids_the_slow_instance() -> None:
    """p2c over peak-EWMA sends almost nothing to an instance measured ten times slower."""
    policy = PeakEwma(random.Random(5))
    for inst, rtt in ((A, 0.01), (B, 0.01), (C, 0.1)):
        policy.on_start(inst, 0.0)
        policy.on_result(inst, now=0.0, latency=rtt, ok=True)
    counts = Counter(policy.pick([A, B, C], 0.0).id for _ in range(3000))
    # C can only win when it is not drawn at all, i.e. never: p2c draws two distinct instances.
    assert counts["c"] == 0
    assert counts["a"] > 1000 and counts["b"] > 1000


def test_p2c_ewma_peak_jumps_up_and_decays_down() -> None:
    """A slow observation is taken at once; fast ones bring the cost back down over the decay time."""
    policy = PeakEwma(random.Random(6), decay=1.0, default_latency=0.001)
    policy.on_result(A, now=0.0, latency=0.01, ok=True)
    policy.on_result(A, now=0.1, latency=0.5, ok=True)
    assert policy.cost(A, 0.1) == pytest.approx(0.5)
    policy.on_result(A, now=5.0, latency=0.01, ok=True)
    assert policy.cost(A, 5.0) < 0.02


def test_p2c_ewma_penalises_fast_failures() -> None:
    """An error answered in 1 ms costs as much as the failure penalty, not 1 ms."""
    policy = PeakEwma(random.Random(7), failure_penalty=1.0)
    policy.on_result(A, now=0.0, latency=0.001, ok=False)
    policy.on_result(B, now=0.0, latency=0.05, ok=True)
    assert policy.cost(A, 0.0) > policy.cost(B, 0.0)
    assert all(policy.pick([A, B], 0.0) is B for _ in range(50))


def test_p2c_ewma_honours_retry_after() -> None:
    """An instance that answered Retry-After: 2 is avoided for two seconds, then tried again."""
    policy = PeakEwma(random.Random(8))
    policy.on_result(A, now=0.0, latency=0.001, ok=True, retry_after=2.0)
    policy.on_result(B, now=0.0, latency=0.2, ok=True)
    assert all(policy.pick([A, B], 1.0) is B for _ in range(50))
    assert policy.pick([A, B], 2.5) is A


def test_p2c_ewma_counts_requests_in_flight() -> None:
    """Cost grows with requests in flight, so a busy instance loses to an equally fast idle one."""
    policy = PeakEwma(random.Random(9))
    for inst in (A, B):
        policy.on_result(inst, now=0.0, latency=0.01, ok=True)
    for _ in range(3):
        policy.on_start(A, 0.0)
    assert policy.cost(A, 0.0) == pytest.approx(4 * policy.cost(B, 0.0))
    assert policy.pick([A, B], 0.0) is B


def test_forget_drops_state_of_departed_instances() -> None:
    """forget() keeps only the listed keys, so a returning instance starts fresh."""
    policy = PeakEwma(random.Random(10))
    policy.on_result(A, now=0.0, latency=5.0, ok=True)
    policy.forget({B.key})
    assert policy.cost(A, 0.0) == pytest.approx(policy.default_latency)


def test_empty_candidates_raise_no_healthy_instance() -> None:
    """Every policy refuses an empty list with NoHealthyInstance."""
    for name in ("round_robin", "random", "weighted", "least_outstanding", "p2c-ewma"):
        with pytest.raises(NoHealthyInstance):
            make_policy(name, random.Random(0)).pick([], 0.0)


def test_make_policy_rejects_unknown_names() -> None:
    """An unknown policy name is a ValueError listing the valid ones."""
    with pytest.raises(ValueError, match="round_robin"):
        make_policy("fastest")
