"""Choosing an instance: ejection, breakers (with panic routing), exclusions, tags, the client's policies."""

from __future__ import annotations

from collections import Counter

from roost.client.breaker import BreakerConfig
from roost.client.instance import Instance
from roost.gateway.outlier import EjectionPolicy
from roost.gateway.upstream import ServicePool, Upstream

EJECT = EjectionPolicy(consecutive_failures=2, base_ejection=10.0, max_ejection=60.0, max_percent=50)
BREAKER = BreakerConfig(failure_threshold=100, error_rate=0.5, min_requests=4, open_timeout=10.0)


def pool(*ids: str, tags: dict[str, tuple[str, ...]] | None = None) -> ServicePool:
    p = ServicePool("web", "round_robin", EJECT, BREAKER)
    p.update(
        [
            Upstream(Instance("web", i, "127.0.0.1", 9000 + n, tags=(tags or {}).get(i, ())))
            for n, i in enumerate(ids)
        ]
    )
    return p


def picks(p: ServicePool, n: int, now: float = 0.0, **kw: object) -> Counter[str]:
    seen: Counter[str] = Counter()
    for _ in range(n):
        up = p.pick(now, **kw)  # type: ignore[arg-type]
        seen[up.id if up else "-"] += 1
    return seen


def test_round_robin_spreads_evenly() -> None:
    """The client library's round robin gives each of three instances a third."""
    assert set(picks(pool("a", "b", "c"), 30).values()) == {10}


def test_ejected_instance_gets_nothing_until_its_time_is_up() -> None:
    """Two failures eject an instance; picks skip it, then it returns after the ejection time."""
    p = pool("a", "b")
    a = p.by_id["a"]
    for _ in range(2):
        p.finished(a, "", 0.0, 0.01, ok=False)
        p.outlier.failure("a", 0.0)
    assert picks(p, 10, now=5.0) == Counter({"b": 10})
    assert picks(p, 10, now=10.0)["a"] == 5


def test_excluded_instances_are_skipped_and_none_when_all_are() -> None:
    """Instances already tried are skipped; with every instance tried there is nothing to pick."""
    p = pool("a", "b")
    a, b = p.by_id["a"], p.by_id["b"]
    assert picks(p, 6, exclude=(a,)) == Counter({"b": 6})
    assert p.pick(0.0, exclude=(a, b)) is None


def test_open_breaker_is_avoided_unless_nothing_else_is_left() -> None:
    """An instance with an open breaker is skipped; when every breaker is open they are ignored (panic)."""
    p = pool("a", "b")
    a, b = p.by_id["a"], p.by_id["b"]
    for _ in range(4):
        p.finished(a, "", 0.0, 0.01, ok=False)
    assert picks(p, 6, now=1.0) == Counter({"b": 6})
    for _ in range(4):
        p.finished(b, "", 1.0, 0.01, ok=False)
    assert sum(picks(p, 6, now=2.0).values()) == 6


def test_tag_filter_limits_the_candidates() -> None:
    """A route's tags keep only instances that carry all of them."""
    p = pool("a", "b", "c", tags={"a": ("blue", "v2"), "b": ("blue",)})
    assert picks(p, 6, tags=("blue",)) == Counter({"a": 3, "b": 3})
    assert picks(p, 4, tags=("blue", "v2")) == Counter({"a": 4})
    assert p.pick(0.0, tags=("green",)) is None


def test_update_keeps_unchanged_instances_and_reports_removed_ones() -> None:
    """A catalog update keeps the Upstream (and its pool) of instances that stayed and returns the rest."""
    p = pool("a", "b")
    a = p.by_id["a"]
    removed = p.update(
        [Upstream(Instance("web", "a", "127.0.0.1", 9000)), Upstream(Instance("web", "c", "127.0.0.1", 9002))]
    )
    assert p.by_id["a"] is a
    assert [u.id for u in removed] == ["b"]
    assert set(p.by_id) == {"a", "c"}


def test_named_policy_per_route() -> None:
    """A route may name another policy; least_outstanding avoids the instance with requests in flight."""
    p = pool("a", "b")
    a = p.by_id["a"]
    p.started(a, "least_outstanding", 0.0)
    assert picks(p, 5, policy="least_outstanding") == Counter({"b": 5})
