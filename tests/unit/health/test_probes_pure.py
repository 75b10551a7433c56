"""Pure parts of the probes and the check policy: status mapping, timeouts, allowed targets."""

from __future__ import annotations

import pytest

from roost.errors import ValidationError
from roost.health.guard import CheckPolicy, target_host
from roost.health.probes import http_status, probe_timeout
from roost.model import CheckDefinition, CheckKind, Status


def http(url: str, **kw: object) -> CheckDefinition:
    return CheckDefinition("c", "c", CheckKind.HTTP, http=url, interval=10, **kw)  # type: ignore[arg-type]


def test_http_status_mapping() -> None:
    """2xx is passing, 429 warning, everything else critical (Consul's rules)."""
    assert [http_status(c) for c in (200, 204, 299)] == [Status.PASSING] * 3
    assert http_status(429) is Status.WARNING
    assert [http_status(c) for c in (301, 404, 500, 503)] == [Status.CRITICAL] * 4


def test_timeout_defaults_and_cap() -> None:
    """Timeout defaults to 10s and is capped below the interval."""
    assert probe_timeout(CheckDefinition("c", "c", CheckKind.TCP, tcp="a:1", interval=30)) == 10
    assert probe_timeout(CheckDefinition("c", "c", CheckKind.TCP, tcp="a:1", interval=30, timeout=2)) == 2
    assert probe_timeout(CheckDefinition("c", "c", CheckKind.TCP, tcp="a:1", interval=1)) < 1


def test_target_host() -> None:
    """The dialled host and port come from the HTTP URL, the TCP address or the gRPC target."""
    assert target_host(http("http://10.0.0.1:8080/health")) == ("10.0.0.1", 8080)
    assert target_host(http("https://example.com/")) == ("example.com", 443)
    tcp = CheckDefinition("c", "c", CheckKind.TCP, tcp="[::1]:53", interval=1)
    assert target_host(tcp) == ("::1", 53)
    grpc = CheckDefinition("c", "c", CheckKind.GRPC, grpc="127.0.0.1:50051/my.Service", interval=1)
    assert target_host(grpc) == ("127.0.0.1", 50051)


def test_cidr_guard_rejects_outside_addresses() -> None:
    """With allowed CIDRs, an IP target outside them is refused at registration with a ValidationError."""
    policy = CheckPolicy(["127.0.0.0/8", "10.1.0.0/16"])
    policy(http("http://127.0.0.1:80/"))
    policy(http("http://10.1.2.3/"))
    with pytest.raises(ValidationError) as exc:
        policy(http("http://169.254.169.254/latest/meta-data"))
    assert exc.value.field == "Check.HTTP"
    with pytest.raises(ValidationError):
        policy(CheckDefinition("c", "c", CheckKind.TCP, tcp="192.168.1.1:22", interval=1))


def test_cidr_guard_allows_everything_by_default() -> None:
    """Without --check-allow-cidr every address is allowed, as in Consul."""
    CheckPolicy()(http("http://169.254.169.254/"))


def test_script_checks_refused_unless_enabled() -> None:
    """Script checks are refused at registration unless the agent enables them."""
    script = CheckDefinition("c", "c", CheckKind.SCRIPT, args=("true",), interval=1)
    with pytest.raises(ValidationError, match="enable-script-checks"):
        CheckPolicy()(script)
    CheckPolicy(enable_script_checks=True)(script)


async def test_resolve_judges_every_address() -> None:
    """At probe time a name is resolved and each address must be inside the allowed networks."""
    from roost.health.guard import TargetRefused

    assert await CheckPolicy(["127.0.0.0/8"]).resolve("127.0.0.1", 80) == "127.0.0.1"
    with pytest.raises(TargetRefused):
        await CheckPolicy(["10.0.0.0/8"]).resolve("127.0.0.1", 80)
