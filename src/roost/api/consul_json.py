"""Consul's JSON shapes <-> roost's model. Compatibility lives here, at the edge.

Request bodies are accepted in Consul's CamelCase and in the lower/snake case that py-consul and
config files use: keys are compared with case and underscores folded (``TaggedAddresses``,
``tagged_addresses`` and ``taggedaddresses`` are one key). Responses are CamelCase.
"""

from __future__ import annotations

import functools
import uuid
from typing import Any

from roost.catalog.state import Entry, Indexed
from roost.errors import ValidationError
from roost.model import Check, CheckDefinition, CheckKind, Service, Status, TaggedAddress, Weights
from roost.model.duration import format_duration, parse_duration
from roost.model.validate import MAX_CHECKS_PER_SERVICE


def fold(key: str) -> str:
    return key.replace("_", "").replace("-", "").lower()


class Fields:
    """A JSON object with folded keys and typed getters that raise ValidationError naming the field."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise ValidationError(f"{where} must be a JSON object", field=where)
        self.where = where
        self.data = {fold(str(k)): v for k, v in data.items()}

    def has(self, key: str) -> bool:
        return self.data.get(fold(key)) is not None

    def raw(self, key: str) -> Any:
        return self.data.get(fold(key))

    def _name(self, key: str) -> str:
        return f"{self.where}.{key}"

    def text(self, key: str, default: str = "") -> str:
        value = self.raw(key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise ValidationError(f"{self._name(key)} must be a string", field=self._name(key))
        return value

    def integer(self, key: str, default: int = 0) -> int:
        value = self.raw(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
            if isinstance(value, str) and value.strip().lstrip("-").isdigit():
                return int(value)
            raise ValidationError(f"{self._name(key)} must be an integer", field=self._name(key))
        return int(value)

    def boolean(self, key: str, default: bool = False) -> bool:
        value = self.raw(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise ValidationError(f"{self._name(key)} must be true or false", field=self._name(key))
        return value

    def texts(self, key: str) -> tuple[str, ...]:
        value = self.raw(key)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValidationError(f"{self._name(key)} must be a list of strings", field=self._name(key))
        return tuple(value)

    def text_map(self, key: str) -> dict[str, str]:
        value = self.raw(key)
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ValidationError(
                f"{self._name(key)} must be an object of string values", field=self._name(key)
            )
        return {str(k): v for k, v in value.items()}

    def duration(self, key: str) -> float | None:
        value = self.raw(key)
        if value is None or value == "":
            return None
        return parse_duration(value, field=self._name(key))

    def obj(self, key: str) -> Fields | None:
        value = self.raw(key)
        return None if value is None else Fields(value, self._name(key))


# -- requests --------------------------------------------------------------------------------


def parse_service(body: Any, *, owner: str) -> tuple[Service, list[CheckDefinition]]:
    """A service registration body (bare, or the config-file form ``{"service": {...}}``)."""
    top = Fields(body, "Service")
    if len(top.data) == 1 and isinstance(top.raw("service"), dict):
        top = Fields(top.raw("service"), "Service")
    name = top.text("Name")
    if not name:
        raise ValidationError("Service.Name is required", field="Service.Name")
    service_id = top.text("ID") or name
    weights = Weights()
    if (w := top.obj("Weights")) is not None:
        weights = Weights(w.integer("Passing", 1), w.integer("Warning", 1))
    service = Service(
        id=service_id,
        name=name,
        address=top.text("Address"),
        port=top.integer("Port"),
        tags=top.texts("Tags"),
        meta=top.text_map("Meta"),
        weights=weights,
        enable_tag_override=top.boolean("EnableTagOverride"),
        tagged_addresses=_tagged_addresses(top),
        kind=top.text("Kind"),
        owner=owner,
    )
    if not 0 <= service.port <= 65535:
        raise ValidationError(
            f"Service.Port must be between 1 and 65535, got {service.port}", field="Service.Port"
        )
    raw_checks: list[Any] = []
    if top.has("Check"):
        raw_checks.append(top.raw("Check"))
    if top.has("Checks"):
        more = top.raw("Checks")
        if not isinstance(more, list):
            raise ValidationError("Service.Checks must be a list of check objects", field="Service.Checks")
        raw_checks.extend(more)
    if len(raw_checks) > MAX_CHECKS_PER_SERVICE:
        raise ValidationError(
            f"a service may have at most {MAX_CHECKS_PER_SERVICE} checks", field="Service.Checks"
        )
    checks = []
    for n, raw in enumerate(raw_checks, start=1):
        fields = Fields(raw, "Check" if len(raw_checks) == 1 else f"Checks[{n - 1}]")
        default_id = f"service:{service_id}" if len(raw_checks) == 1 else f"service:{service_id}:{n}"
        checks.append(
            parse_check(
                fields, service_id=service_id, default_id=default_id, default_name=f"Service '{name}' check"
            )
        )
    return service, checks


def _tagged_addresses(top: Fields) -> dict[str, TaggedAddress]:
    raw = top.raw("TaggedAddresses")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValidationError("Service.TaggedAddresses must be an object", field="Service.TaggedAddresses")
    out = {}
    for key, value in raw.items():
        if isinstance(value, str):  # py-consul's {"lan": "10.0.0.1"}
            out[str(key)] = TaggedAddress(value, 0)
        else:
            fields = Fields(value, f"Service.TaggedAddresses.{key}")
            out[str(key)] = TaggedAddress(fields.text("Address"), fields.integer("Port"))
    return out


def parse_check_body(body: Any, *, owner: str = "") -> CheckDefinition:
    """A standalone check registration (PUT /v1/agent/check/register)."""
    fields = Fields(body, "Check")
    name = fields.text("Name")
    if not name:
        raise ValidationError("Check.Name is required", field="Check.Name")
    return parse_check(fields, service_id=fields.text("ServiceID"), default_id=name, default_name=name)


def parse_check(fields: Fields, *, service_id: str, default_id: str, default_name: str) -> CheckDefinition:
    check_id = fields.text("CheckID") or fields.text("ID") or default_id
    args = fields.texts("Args") or fields.texts("ScriptArgs")
    if not args and fields.has("Script"):
        args = ("/bin/sh", "-c", fields.text("Script"))
    kinds = [
        kind
        for kind, present in (
            (CheckKind.TTL, fields.has("TTL")),
            (CheckKind.HTTP, fields.has("HTTP")),
            (CheckKind.TCP, fields.has("TCP")),
            (CheckKind.GRPC, fields.has("GRPC")),
            (CheckKind.SCRIPT, bool(args)),
        )
        if present
    ]
    if fields.has("DockerContainerID") or fields.has("H2PING") or fields.has("AliasService"):
        raise ValidationError(
            f"{fields.where}: Docker, H2PING and alias checks are not supported; "
            "use TTL, HTTP, TCP, GRPC or Args",
            field=fields.where,
        )
    if not kinds:
        raise ValidationError(f"{fields.where} needs one of TTL, HTTP, TCP, GRPC or Args", field=fields.where)
    if len(kinds) > 1:
        raise ValidationError(
            f"{fields.where} has more than one check type ({', '.join(k.value.upper() for k in kinds)})",
            field=fields.where,
        )
    status = Status.CRITICAL
    if fields.has("Status"):
        text = fields.text("Status").lower()
        if text not in ("passing", "warning", "critical"):
            raise ValidationError(
                f"{fields.where}.Status must be passing, warning or critical", field=f"{fields.where}.Status"
            )
        status = Status(text)
    header: dict[str, list[str]] = {}
    if (raw_header := fields.raw("Header")) is not None:
        if not isinstance(raw_header, dict):
            raise ValidationError(f"{fields.where}.Header must be an object", field=f"{fields.where}.Header")
        for key, values in raw_header.items():
            if isinstance(values, str):
                values = [values]
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise ValidationError(
                    f"{fields.where}.Header[{key!r}] must be a list of strings",
                    field=f"{fields.where}.Header",
                )
            header[str(key)] = list(values)
    return CheckDefinition(
        id=check_id,
        name=fields.text("Name") or default_name,
        kind=kinds[0],
        service_id=fields.text("ServiceID") or service_id,
        notes=fields.text("Notes"),
        http=fields.text("HTTP"),
        method=fields.text("Method").upper(),
        header=header,
        body=fields.text("Body"),
        tls_skip_verify=fields.boolean("TLSSkipVerify"),
        tcp=fields.text("TCP"),
        grpc=fields.text("GRPC"),
        grpc_use_tls=fields.boolean("GRPCUseTLS"),
        args=args,
        ttl=fields.duration("TTL"),
        interval=fields.duration("Interval"),
        timeout=fields.duration("Timeout"),
        deregister_after=fields.duration("DeregisterCriticalServiceAfter"),
        success_before_passing=fields.integer("SuccessBeforePassing"),
        failures_before_warning=fields.integer("FailuresBeforeWarning"),
        failures_before_critical=fields.integer("FailuresBeforeCritical"),
        initial_status=status,
    )


# -- responses -------------------------------------------------------------------------------


class Shapes:
    """Renders model values in Consul's response shapes for one agent (node, datacenter)."""

    def __init__(self, node: str, address: str, datacenter: str) -> None:
        self.node = node
        self.address = address
        self.datacenter = datacenter
        self.node_id = _node_id(node)
        self.tagged = {"lan": address, "lan_ipv4": address, "wan": address, "wan_ipv4": address}

    def owner(self, svc: Service | None) -> tuple[str, str]:
        """The node an instance belongs to, and its address. With a shared store (etcd) that is the
        agent that accepted the registration, as in Consul; this agent when unknown (instances
        written straight into etcd), whose address is then the instance's own."""
        if svc is None or not svc.owner or svc.owner == self.node:
            return self.node, self.address
        return svc.owner, svc.address or self.address

    def node_json(self, index: int = 1, svc: Service | None = None) -> dict[str, Any]:
        node, address = self.owner(svc)
        tagged = self.tagged if node == self.node else {"lan": address, "wan": address}
        return {
            "ID": self.node_id if node == self.node else _node_id(node),
            "Node": node,
            "Address": address,
            "Datacenter": self.datacenter,
            "TaggedAddresses": tagged,
            "Meta": {"consul-network-segment": ""},
            "CreateIndex": 1,
            "ModifyIndex": max(index, 1),
        }

    def agent_service(self, svc: Service) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ID": svc.id,
            "Service": svc.name,
            "Tags": list(svc.tags),
            "Meta": dict(svc.meta),
            "Port": svc.port,
            "Address": svc.address,
            "Weights": {"Passing": svc.weights.passing, "Warning": svc.weights.warning},
            "EnableTagOverride": svc.enable_tag_override,
            "Datacenter": self.datacenter,
        }
        if svc.tagged_addresses:
            out["TaggedAddresses"] = {
                k: {"Address": v.address, "Port": v.port} for k, v in svc.tagged_addresses.items()
            }
        if svc.kind:
            out["Kind"] = svc.kind
        return out

    def health_check(
        self, check: Check, svc: Service | None, index: Indexed | None, *, node: str = ""
    ) -> dict[str, Any]:
        d = check.definition
        output = check.output
        if check.flapping:
            output = f"[flapping: holding {check.status.value}] {output}"
        out: dict[str, Any] = {
            "Node": node or self.owner(svc)[0],
            "CheckID": d.id,
            "Name": d.name,
            "Status": check.status.value,
            "Notes": d.notes,
            "Output": output,
            "ServiceID": svc.id if svc else "",
            "ServiceName": svc.name if svc else "",
            "ServiceTags": list(svc.tags) if svc else [],
            "Type": "" if d.kind is CheckKind.MANUAL else d.kind.value,
            "Interval": format_duration(d.interval) if d.interval else "",
            "Timeout": format_duration(d.timeout) if d.timeout else "",
            "ExposedPort": 0,
            "Definition": self._definition(d),
            "CreateIndex": index.create_index if index else 1,
            "ModifyIndex": index.modify_index if index else 1,
        }
        if check.flapping:
            out["Flapping"] = True
        return out

    @staticmethod
    def _definition(d: CheckDefinition) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if d.http:
            out.update(
                HTTP=d.http, Method=d.method, Header=d.header, Body=d.body, TLSSkipVerify=d.tls_skip_verify
            )
        if d.tcp:
            out["TCP"] = d.tcp
        if d.grpc:
            out.update(GRPC=d.grpc, GRPCUseTLS=d.grpc_use_tls)
        if d.args:
            out["ScriptArgs"] = list(d.args)
        if d.ttl:
            out["TTL"] = format_duration(d.ttl)
        if d.interval:
            out["Interval"] = format_duration(d.interval)
        if d.timeout:
            out["Timeout"] = format_duration(d.timeout)
        if d.deregister_after:
            out["DeregisterCriticalServiceAfter"] = format_duration(d.deregister_after)
        return out

    def catalog_service(self, entry: Entry) -> dict[str, Any]:
        svc = entry.service
        node = self.node_json(svc=svc)
        out: dict[str, Any] = {
            "ID": node["ID"],
            "Node": node["Node"],
            "Address": node["Address"],
            "Datacenter": self.datacenter,
            "TaggedAddresses": node["TaggedAddresses"],
            "NodeMeta": {"consul-network-segment": ""},
            "ServiceKind": svc.kind,
            "ServiceID": svc.id,
            "ServiceName": svc.name,
            "ServiceTags": list(svc.tags),
            "ServiceAddress": svc.address,
            "ServiceWeights": {"Passing": svc.weights.passing, "Warning": svc.weights.warning},
            "ServiceMeta": dict(svc.meta),
            "ServicePort": svc.port,
            "ServiceEnableTagOverride": svc.enable_tag_override,
            "CreateIndex": entry.index.create_index,
            "ModifyIndex": entry.index.modify_index,
        }
        if svc.tagged_addresses:
            out["ServiceTaggedAddresses"] = {
                k: {"Address": v.address, "Port": v.port} for k, v in svc.tagged_addresses.items()
            }
        return out

    def health_entry(self, entry: Entry, check_indexes: dict[str, Indexed]) -> dict[str, Any]:
        svc = entry.service
        service = self.agent_service(svc)
        service["CreateIndex"] = entry.index.create_index
        service["ModifyIndex"] = entry.index.modify_index
        node = self.node_json(svc=svc)
        return {
            "Node": node,
            "Service": service,
            "Checks": [
                # node checks (serfHealth) are reported as the instance's own node's
                self.health_check(
                    c, svc if c.service_id else None, check_indexes.get("checks/" + c.id), node=node["Node"]
                )
                for c in entry.checks
            ],
        }


@functools.cache
def _node_id(node: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"roost-node.{node}"))
