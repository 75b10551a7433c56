"""Health checks: what to probe (CheckDefinition) and what was last seen (Check)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from roost.model.health import Status


class CheckKind(StrEnum):
    TTL = "ttl"
    HTTP = "http"
    TCP = "tcp"
    GRPC = "grpc"
    SCRIPT = "script"
    MANUAL = "manual"  # no probe: status set through the API (maintenance, serfHealth)


@dataclass(frozen=True, slots=True)
class CheckDefinition:
    """How a check is probed and judged. Durations are seconds."""

    id: str
    name: str
    kind: CheckKind
    service_id: str = ""
    notes: str = ""
    http: str = ""
    method: str = ""
    header: dict[str, list[str]] = field(default_factory=dict)
    body: str = ""
    tls_skip_verify: bool = False
    tcp: str = ""
    grpc: str = ""
    grpc_use_tls: bool = False
    args: tuple[str, ...] = ()
    ttl: float | None = None
    interval: float | None = None
    timeout: float | None = None
    deregister_after: float | None = None
    success_before_passing: int = 0
    failures_before_warning: int = 0
    failures_before_critical: int = 0
    initial_status: Status = Status.CRITICAL

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "name": self.name, "kind": self.kind.value}
        for key in ("service_id", "notes", "http", "method", "body", "tcp", "grpc"):
            if value := getattr(self, key):
                out[key] = value
        if self.header:
            out["header"] = self.header
        if self.tls_skip_verify:
            out["tls_skip_verify"] = True
        if self.grpc_use_tls:
            out["grpc_use_tls"] = True
        if self.args:
            out["args"] = list(self.args)
        for key in ("ttl", "interval", "timeout", "deregister_after"):
            if (value := getattr(self, key)) is not None:
                out[key] = value
        for key in ("success_before_passing", "failures_before_warning", "failures_before_critical"):
            if value := getattr(self, key):
                out[key] = value
        out["initial_status"] = self.initial_status.value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckDefinition:
        def opt(key: str) -> float | None:
            value = data.get(key)
            return None if value is None else float(value)

        return cls(
            id=str(data["id"]),
            name=str(data.get("name") or data["id"]),
            kind=CheckKind(data.get("kind", "manual")),
            service_id=str(data.get("service_id", "")),
            notes=str(data.get("notes", "")),
            http=str(data.get("http", "")),
            method=str(data.get("method", "")),
            header={str(k): [str(x) for x in v] for k, v in (data.get("header") or {}).items()},
            body=str(data.get("body", "")),
            tls_skip_verify=bool(data.get("tls_skip_verify", False)),
            tcp=str(data.get("tcp", "")),
            grpc=str(data.get("grpc", "")),
            grpc_use_tls=bool(data.get("grpc_use_tls", False)),
            args=tuple(str(a) for a in data.get("args") or ()),
            ttl=opt("ttl"),
            interval=opt("interval"),
            timeout=opt("timeout"),
            deregister_after=opt("deregister_after"),
            success_before_passing=int(data.get("success_before_passing", 0)),
            failures_before_warning=int(data.get("failures_before_warning", 0)),
            failures_before_critical=int(data.get("failures_before_critical", 0)),
            initial_status=Status(data.get("initial_status", "critical")),
        )


@dataclass(frozen=True, slots=True)
class Check:
    """A check's definition with its last status and output."""

    definition: CheckDefinition
    status: Status
    output: str = ""
    # Set while flap damping holds the status: the check keeps its last stable status.
    flapping: bool = False

    @property
    def id(self) -> str:
        return self.definition.id

    @property
    def service_id(self) -> str:
        return self.definition.service_id

    def with_status(self, status: Status, output: str, *, flapping: bool | None = None) -> Check:
        return replace(
            self,
            status=status,
            output=output,
            flapping=self.flapping if flapping is None else flapping,
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "definition": self.definition.to_dict(),
            "status": self.status.value,
            "output": self.output,
        }
        if self.flapping:
            out["flapping"] = True
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Check:
        return cls(
            definition=CheckDefinition.from_dict(data["definition"]),
            status=Status(data.get("status", "critical")),
            output=str(data.get("output", "")),
            flapping=bool(data.get("flapping", False)),
        )
