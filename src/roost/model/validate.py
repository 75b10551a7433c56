"""Rules a service or check must meet before it is stored. Raise ValidationError naming the field."""

from __future__ import annotations

import ipaddress
import re

from roost.errors import ValidationError
from roost.model.check import CheckDefinition, CheckKind
from roost.model.service import Service

MAX_ID = 256
MAX_TAGS = 64
MAX_TAG_LEN = 255
MAX_META = 64  # Consul's limits for service meta
MAX_META_KEY = 128
MAX_META_VALUE = 512
MAX_ADDRESS = 255
MAX_OUTPUT = 4096
MAX_CHECKS_PER_SERVICE = 32

_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_META_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.?)+$")


def is_dns_label(name: str) -> bool:
    return bool(_LABEL.match(name))


def _printable(value: str, field: str, limit: int) -> None:
    if not value:
        raise ValidationError(f"{field} must not be empty", field=field)
    if len(value) > limit:
        raise ValidationError(f"{field} is longer than {limit} characters", field=field)
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValidationError(f"{field} must not contain control characters", field=field)


def check_port(port: int, field: str) -> None:
    if not 0 <= port <= 65535:
        raise ValidationError(f"{field} must be between 1 and 65535, got {port}", field=field)


def validate_service(svc: Service) -> None:
    if not svc.name:
        raise ValidationError("Service.Name is required", field="Service.Name")
    if not is_dns_label(svc.name):
        raise ValidationError(
            f"Service.Name {svc.name!r} must be usable as a DNS label: letters, digits and '-', "
            "1-63 characters, not starting or ending with '-'",
            field="Service.Name",
        )
    _printable(svc.id, "Service.ID", MAX_ID)
    check_port(svc.port, "Service.Port")
    if svc.address:
        validate_address(svc.address, "Service.Address")
    if len(svc.tags) > MAX_TAGS:
        raise ValidationError(f"Service.Tags has more than {MAX_TAGS} tags", field="Service.Tags")
    for tag in svc.tags:
        _printable(tag, "Service.Tags", MAX_TAG_LEN)
    if len(svc.meta) > MAX_META:
        raise ValidationError(f"Service.Meta has more than {MAX_META} keys", field="Service.Meta")
    for key, value in svc.meta.items():
        if not _META_KEY.match(key) or len(key) > MAX_META_KEY:
            raise ValidationError(
                f"Service.Meta key {key[:40]!r} must be 1-{MAX_META_KEY} characters of "
                "letters, digits, '_' and '-'",
                field="Service.Meta",
            )
        if len(value) > MAX_META_VALUE:
            raise ValidationError(
                f"Service.Meta[{key!r}] is longer than {MAX_META_VALUE} characters", field="Service.Meta"
            )
    if svc.weights.passing < 1 or svc.weights.passing > 65535:
        raise ValidationError("Service.Weights.Passing must be between 1 and 65535", field="Service.Weights")
    if svc.weights.warning < 0 or svc.weights.warning > 65535:
        raise ValidationError("Service.Weights.Warning must be between 0 and 65535", field="Service.Weights")
    for key, tagged in svc.tagged_addresses.items():
        validate_address(tagged.address, f"Service.TaggedAddresses.{key}.Address")
        check_port(tagged.port, f"Service.TaggedAddresses.{key}.Port")


def validate_address(address: str, field: str) -> None:
    if len(address) > MAX_ADDRESS:
        raise ValidationError(f"{field} is longer than {MAX_ADDRESS} characters", field=field)
    try:
        ipaddress.ip_address(address)
        return
    except ValueError:
        pass
    if not _HOSTNAME.match(address):
        raise ValidationError(
            f"{field} {address[:60]!r} is neither an IP address nor a host name", field=field
        )


def validate_check(check: CheckDefinition) -> None:
    _printable(check.id, "Check.CheckID", MAX_ID)
    _printable(check.name, "Check.Name", MAX_ID)
    if check.kind is CheckKind.TTL:
        if not check.ttl or check.ttl <= 0:
            raise ValidationError("Check.TTL must be a positive duration", field="Check.TTL")
    elif check.kind in (CheckKind.HTTP, CheckKind.TCP, CheckKind.GRPC, CheckKind.SCRIPT):
        if not check.interval or check.interval <= 0:
            raise ValidationError(
                f"Check.Interval is required for a {check.kind.value} check", field="Check.Interval"
            )
        if check.interval < 0.01:
            raise ValidationError("Check.Interval must be at least 10ms", field="Check.Interval")
    if check.kind is CheckKind.HTTP and not check.http.lower().startswith(("http://", "https://")):
        raise ValidationError("Check.HTTP must be an http:// or https:// URL", field="Check.HTTP")
    if check.kind is CheckKind.TCP:
        host, sep, port = check.tcp.rpartition(":")
        if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValidationError("Check.TCP must be host:port", field="Check.TCP")
    if check.timeout is not None and check.timeout < 0:
        raise ValidationError("Check.Timeout must not be negative", field="Check.Timeout")
    for key in ("success_before_passing", "failures_before_warning", "failures_before_critical"):
        value = getattr(check, key)
        if not 0 <= value <= 1000:
            name = "".join(part.capitalize() for part in key.split("_"))
            raise ValidationError(f"Check.{name} must be between 0 and 1000", field=f"Check.{name}")
    if check.deregister_after is not None and check.deregister_after < 0:
        raise ValidationError(
            "Check.DeregisterCriticalServiceAfter must not be negative",
            field="Check.DeregisterCriticalServiceAfter",
        )
