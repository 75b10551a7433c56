"""Instance values, host:port parsing and change diffs."""

from __future__ import annotations

import pytest

from roost.client.instance import ChangeKind, Instance, diff, parse_hostport


def test_parse_hostport_variants() -> None:
    """host:port, [v6]:port and a bare host (default port) all parse."""
    assert parse_hostport("web", "10.0.0.1:8080").hostport == "10.0.0.1:8080"
    assert parse_hostport("web", "[::1]:81").address == "::1"
    assert parse_hostport("web", "[::1]:81").hostport == "[::1]:81"
    assert parse_hostport("web", "example.org", default_port=443).port == 443
    with pytest.raises(ValueError):
        parse_hostport("web", "host:http")


def test_diff_reports_added_removed_and_changed() -> None:
    """diff() matches by ID and reports each kind of change once."""
    a = Instance("web", "a", "10.0.0.1", 80)
    b = Instance("web", "b", "10.0.0.2", 80)
    b2 = Instance("web", "b", "10.0.0.2", 80, tags=("v2",))
    c = Instance("web", "c", "10.0.0.3", 80)
    changes = diff((a, b), (b2, c))
    kinds = {(ch.kind, ch.instance.id) for ch in changes}
    assert kinds == {(ChangeKind.CHANGED, "b"), (ChangeKind.ADDED, "c"), (ChangeKind.REMOVED, "a")}
    assert diff((a, b), (a, b)) == []


def test_meta_changes_are_changes() -> None:
    """A different meta value counts as a change, and instances stay hashable."""
    a = Instance("web", "a", "10.0.0.1", 80, meta={"v": "1"})
    a2 = Instance("web", "a", "10.0.0.1", 80, meta={"v": "2"})
    assert [c.kind for c in diff((a,), (a2,))] == [ChangeKind.CHANGED]
    assert len({a, a2}) == 1 or a != a2


def test_tag_filter() -> None:
    """has_tags accepts one tag or all of several."""
    a = Instance("web", "a", "h", 1, tags=("v1", "eu"))
    assert a.has_tags("v1") and a.has_tags(("v1", "eu")) and a.has_tags(None)
    assert not a.has_tags("v2") and not a.has_tags(("v1", "us"))
