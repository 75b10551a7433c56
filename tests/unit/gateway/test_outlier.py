"""Outlier ejection: consecutive failures eject for growing times, capped, with a probation on return."""

from __future__ import annotations

from roost.gateway.outlier import EjectionPolicy, OutlierDetector, State

POLICY = EjectionPolicy(consecutive_failures=3, base_ejection=10.0, max_ejection=25.0, max_percent=50)


def detector(*keys: str) -> OutlierDetector:
    d = OutlierDetector(POLICY)
    d.sync(set(keys))
    return d


def test_consecutive_failures_eject() -> None:
    """Three failures in a row eject the instance for the base time."""
    d = detector("a", "b")
    assert d.failure("a", 0.0) is None
    assert d.failure("a", 1.0) is None
    ejected = d.failure("a", 2.0)
    assert ejected is not None and ejected.until == 12.0 and ejected.times == 1
    assert not d.available("a", 5.0)
    assert d.available("b", 5.0)


def test_a_success_resets_the_count() -> None:
    """Failures separated by a success do not add up."""
    d = detector("a", "b")
    d.failure("a", 0.0)
    d.failure("a", 0.0)
    d.success("a", 0.0)
    assert d.failure("a", 0.0) is None
    assert d.available("a", 0.0)


def test_ejection_ends_in_probation_and_a_success_closes() -> None:
    """After the ejection time the instance is back on probation; one success makes it healthy again."""
    d = detector("a", "b")
    for _ in range(3):
        d.failure("a", 0.0)
    assert d.state("a", 9.9) is State.OPEN
    assert d.available("a", 10.0)
    assert d.state("a", 10.0) is State.HALF_OPEN
    d.success("a", 10.5)
    assert d.state("a", 10.5) is State.CLOSED


def test_failure_on_probation_ejects_again_for_longer_up_to_the_cap() -> None:
    """One failure on probation ejects again at once, for base x times, never more than max_ejection."""
    d = detector("a", "b")
    for _ in range(3):
        d.failure("a", 0.0)
    d.available("a", 10.0)
    second = d.failure("a", 10.0)
    assert second is not None and second.until == 30.0 and second.times == 2
    d.available("a", 30.0)
    third = d.failure("a", 30.0)
    assert third is not None and third.until == 55.0  # 3 x 10 capped at 25


def test_share_of_ejected_instances_is_capped() -> None:
    """With a 50% cap only one of two instances may be out; the second keeps serving."""
    d = detector("a", "b")
    for _ in range(3):
        d.failure("a", 0.0)
    for _ in range(5):
        assert d.failure("b", 1.0) is None
    assert d.available("b", 1.0)
    assert d.ejected(1.0) == ["a"]


def test_one_instance_may_always_be_ejected() -> None:
    """Even when the cap rounds down to zero, a single instance can be ejected (as Envoy does)."""
    d = detector("only")
    for _ in range(3):
        d.failure("only", 0.0)
    assert not d.available("only", 1.0)


def test_times_decay_after_a_long_healthy_spell() -> None:
    """An instance healthy for max_ejection after its last ejection starts again from the base time."""
    d = detector("a", "b")
    for _ in range(3):
        d.failure("a", 0.0)
    d.available("a", 10.0)
    d.success("a", 10.0)
    d.success("a", 40.0)
    for _ in range(3):
        last = d.failure("a", 41.0)
    assert last is not None and last.times == 1 and last.until == 51.0


def test_sync_forgets_removed_instances() -> None:
    """An instance that left the service loses its state; a new one starts healthy."""
    d = detector("a", "b")
    for _ in range(3):
        d.failure("a", 0.0)
    d.sync({"b", "c"})
    assert d.ejected(1.0) == []
    assert d.available("c", 1.0)


def test_disturbed_counts_instances_out_of_the_closed_state() -> None:
    """`disturbed` is 0 when all are healthy, counts ejected and probation instances, and returns to 0."""
    d = detector("a", "b")
    assert d.disturbed == 0
    for _ in range(3):
        d.failure("a", 0.0)
    assert d.disturbed == 1
    d.available("a", 10.0)
    assert d.disturbed == 1
    d.failure("a", 10.0)  # ejected again from probation
    assert d.disturbed == 1
    d.available("a", 30.0)
    d.success("a", 30.0)
    assert d.disturbed == 0
