import pytest

from roost.errors import ValidationError
from roost.model.duration import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10s", 10),
        ("1m30s", 90),
        ("500ms", 0.5),
        ("1h", 3600),
        ("2.5s", 2.5),
        ("30", 30),
        ("0", 0),
        (10**9, 1),
    ],
)
def test_parse(text: object, seconds: float) -> None:
    """Go duration strings, bare seconds and integer nanoseconds all parse to seconds."""
    assert parse_duration(text, field="x") == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["abc", "10x", "s", "-5s", "1m garbage", True, None, [1]])
def test_parse_rejects(text: object) -> None:
    """Anything else is a ValidationError naming the field."""
    with pytest.raises(ValidationError, match="wait"):
        parse_duration(text, field="wait")


@pytest.mark.parametrize(
    ("seconds", "text"), [(10, "10s"), (90, "1m30s"), (0.5, "500ms"), (3600, "1h0m0s"), (0, "0s")]
)
def test_format(seconds: float, text: str) -> None:
    """Durations render the way Consul renders them."""
    assert format_duration(seconds) == text
