"""Metrics: per-route and per-upstream series, Prometheus text, and the sum over worker processes."""

from __future__ import annotations

from pathlib import Path

from roost.gateway.metrics import BUCKETS, Metrics


def test_observe_counts_status_classes_and_buckets() -> None:
    """A 200 in 3 ms and a 503 in 2 s land in class 2 and 5 and in the right latency buckets."""
    m = Metrics()
    s = m.route("web")
    s.observe(200, 0.003)
    s.observe(503, 2.0)
    assert s.requests == 2 and s.classes[2] == 1 and s.classes[5] == 1
    assert s.buckets[BUCKETS.index(0.005)] == 1
    assert s.buckets[BUCKETS.index(2.5)] == 1


def test_prometheus_text_has_cumulative_buckets() -> None:
    """The histogram is cumulative and ends with +Inf equal to the count."""
    m = Metrics()
    m.route("web").observe(200, 0.003)
    m.route("web").observe(200, 20.0)
    m.upstream("web/a").ejections = 2
    text = m.render(m.snapshot()).decode()
    assert 'roost_gateway_route_duration_seconds_bucket{route="web",le="0.005"} 1' in text
    assert 'roost_gateway_route_duration_seconds_bucket{route="web",le="+Inf"} 2' in text
    assert 'roost_gateway_route_duration_seconds_count{route="web"} 2' in text
    assert 'roost_gateway_upstream_ejections_total{upstream="web/a"} 2' in text


def test_workers_snapshots_are_summed(tmp_path: Path) -> None:
    """Each worker publishes its counters; any worker answers with the sum of all of them."""
    one, two = Metrics(str(tmp_path), 0), Metrics(str(tmp_path), 1)
    one.route("web").observe(200, 0.001)
    two.route("web").observe(500, 0.001)
    two.route("pay").observe(200, 0.001)
    two.publish()
    total = one.combined()
    assert total["routes"]["web"]["requests"] == 2
    assert total["routes"]["web"]["classes"][5] == 1
    assert total["routes"]["pay"]["requests"] == 1
