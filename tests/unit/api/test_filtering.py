"""Consul filter expressions over health entries shaped as the API answers them."""

from __future__ import annotations

import pytest

from roost.api.filtering import apply_filter, compile_filter
from roost.errors import ValidationError


def entry(sid: str, tags: list[str], version: str, statuses: list[str], port: int = 80) -> dict[str, object]:
    return {
        "Node": {"Node": "n1", "Address": "127.0.0.1"},
        "Service": {"ID": sid, "Service": "web", "Tags": tags, "Meta": {"version": version}, "Port": port},
        "Checks": [{"CheckID": f"{sid}-{i}", "Status": s} for i, s in enumerate(statuses)],
    }


ENTRIES = [
    entry("a", ["v1", "primary"], "1.0", ["passing", "passing"], 8080),
    entry("b", ["v2"], "2.0", ["passing", "critical"]),
    entry("c", [], "", ["warning"]),
]


def ids(expression: str) -> list[str]:
    kept = apply_filter(compile_filter(expression), ENTRIES)
    return [e["Service"]["ID"] for e in kept]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('Service.Meta.version == "2.0"', ["b"]),
        ("Service.Meta.version != `2.0`", ["a", "c"]),
        ('"v1" in Service.Tags', ["a"]),
        ('"v1" not in Service.Tags', ["b", "c"]),
        ('Service.Tags contains "v2"', ["b"]),
        ('Service.Tags not contains "v2"', ["a", "c"]),
        ("Service.Tags is empty", ["c"]),
        ("Service.Tags is not empty", ["a", "b"]),
        ("Service.Meta.version is empty", ["c"]),
        ("Service.Meta.missing is empty", ["a", "b", "c"]),
        ('Service.ID matches "^[ab]$"', ["a", "b"]),
        ('Service.ID not matches "^[ab]$"', ["c"]),
        ("Service.Port == 8080", ["a"]),
        ('"critical" in Checks.Status', ["b"]),
        ('Checks.Status == "warning"', ["c"]),
        ('"v1" in Service.Tags or Service.Meta.version == "2.0"', ["a", "b"]),
        ('not ("v1" in Service.Tags) and Service.Tags is not empty', ["b"]),
        ('Service.ID == "a" or Service.ID == "b" and Service.Port == 8080', ["a"]),
        ('(Service.ID == "a" or Service.ID == "b") and Service.Port == 80', ["b"]),
        ('service.meta.VERSION == "1.0"', ["a"]),  # field names match without regard to case
        ('Service.Meta.version == "1.0" and Node.Node == n1', ["a"]),
    ],
)
def test_expressions(expression: str, expected: list[str]) -> None:
    assert ids(expression) == expected


@pytest.mark.parametrize(
    "expression",
    [
        "Service.ID ==",
        '== "a"',
        'Service.ID = "a"',
        '(Service.ID == "a"',
        'Service.ID == "a")',
        'Service.ID == "a" and',
        'Service.ID matches "("',
        "Service.ID is full",
        '"a" == Service.ID',
        'Service.ID == "unterminated',
        "and or not",
    ],
)
def test_bad_expressions_are_validation_errors(expression: str) -> None:
    with pytest.raises(ValidationError) as caught:
        compile_filter(expression)
    assert "filter" in str(caught.value)


def test_map_answers_are_filtered_by_value() -> None:
    services = {"a": {"ID": "a", "Tags": ["x"]}, "b": {"ID": "b", "Tags": []}}
    assert list(apply_filter(compile_filter('"x" in Tags'), services)) == ["a"]
