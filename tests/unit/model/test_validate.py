import pytest

from roost.errors import ValidationError
from roost.model import CheckDefinition, CheckKind, Service
from roost.model.health import Status, aggregate
from roost.model.validate import validate_check, validate_service


def test_aggregate_order() -> None:
    """maintenance > critical > warning > passing, and no checks means passing."""
    assert aggregate([]) is Status.PASSING
    assert aggregate([Status.PASSING, Status.WARNING]) is Status.WARNING
    assert aggregate([Status.WARNING, Status.CRITICAL, Status.PASSING]) is Status.CRITICAL
    assert aggregate([Status.CRITICAL, Status.MAINTENANCE]) is Status.MAINTENANCE


@pytest.mark.parametrize(
    ("service", "field"),
    [
        (Service(id="a", name=""), "Service.Name"),
        (Service(id="a", name="-web"), "Service.Name"),
        (Service(id="a", name="w" * 64), "Service.Name"),
        (Service(id="", name="web"), "Service.ID"),
        (Service(id="a\n", name="web"), "Service.ID"),
        (Service(id="a", name="web", port=65536), "Service.Port"),
        (Service(id="a", name="web", address="not an address!"), "Service.Address"),
        (Service(id="a", name="web", meta={"bad key": "v"}), "Service.Meta"),
        (Service(id="a", name="web", meta={"k": "v" * 600}), "Service.Meta"),
        (Service(id="a", name="web", tags=tuple(f"t{i}" for i in range(65))), "Service.Tags"),
    ],
)
def test_invalid_services(service: Service, field: str) -> None:
    """Each invalid service is refused with the offending field named."""
    with pytest.raises(ValidationError) as info:
        validate_service(service)
    assert info.value.field == field


def test_valid_service() -> None:
    """A typical service passes validation."""
    validate_service(
        Service(id="web-1", name="web", address="10.0.0.1", port=80, tags=("v1",), meta={"a": "b"})
    )
    validate_service(Service(id="web-1", name="web", address="web.internal.example", port=80))


def test_check_rules() -> None:
    """TTL checks need a TTL, probing checks an interval, TCP checks host:port."""
    with pytest.raises(ValidationError, match="TTL"):
        validate_check(CheckDefinition("c", "c", CheckKind.TTL))
    with pytest.raises(ValidationError, match="Interval"):
        validate_check(CheckDefinition("c", "c", CheckKind.HTTP, http="http://x/"))
    with pytest.raises(ValidationError, match="host:port"):
        validate_check(CheckDefinition("c", "c", CheckKind.TCP, tcp="nohost", interval=1))
    validate_check(CheckDefinition("c", "c", CheckKind.TCP, tcp="127.0.0.1:80", interval=1))


def test_round_trip() -> None:
    """Stored forms read back to equal values; a minimal {host, port} takes name and ID from the key."""
    svc = Service(id="a", name="web", address="1.2.3.4", port=5, tags=("x",), meta={"k": "v"}, owner="n1")
    assert Service.from_dict(svc.to_dict()) == svc
    bare = Service.from_dict({"host": "10.1.1.1", "port": 8000}, name="web", id="w9")
    assert (bare.name, bare.id, bare.address, bare.port) == ("web", "w9", "10.1.1.1", 8000)
    check = CheckDefinition(
        "c",
        "c",
        CheckKind.HTTP,
        service_id="a",
        http="http://x/",
        interval=2.0,
        header={"A": ["b"]},
        failures_before_critical=3,
    )
    assert CheckDefinition.from_dict(check.to_dict()) == check
