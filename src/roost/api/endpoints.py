"""The /v1 endpoints: Consul's agent, catalog, health and status APIs over the catalog."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from roost import __version__
from roost.api.blocking import QueryCache, block
from roost.api.consul_json import Fields, Shapes, parse_check_body, parse_service
from roost.api.filtering import Predicate, apply_filter, filter_arg
from roost.api.http import Request, Response, Router, json_response
from roost.catalog.waiters import CHECKS, NODES, SERVICES, service_topic
from roost.errors import NotFound, ValidationError
from roost.model import Status
from roost.model.health import parse_status

if TYPE_CHECKING:
    from roost.catalog.catalog import Catalog
    from roost.config import AgentConfig
    from roost.health.runner import HealthRunner

_OK = Response(200, b"", b"text/plain; charset=utf-8")


class Endpoints:
    def __init__(self, catalog: Catalog, runner: HealthRunner, config: AgentConfig) -> None:
        self.catalog = catalog
        self.state = catalog.state
        self.runner = runner
        self.config = config
        self.shapes = Shapes(catalog.node, config.node_address, config.datacenter)
        self.cache = QueryCache()

    def routes(self, router: Router) -> None:
        add = router.add
        add("PUT POST", "/v1/agent/service/register", self.service_register)
        add("PUT POST", "/v1/agent/service/deregister/:", self.service_deregister)
        add("PUT POST", "/v1/agent/service/maintenance/:", self.service_maintenance)
        add("PUT POST", "/v1/agent/maintenance", self.node_maintenance)
        add("GET", "/v1/agent/services", self.agent_services)
        add("GET", "/v1/agent/service/:", self.agent_service)
        add("GET", "/v1/agent/checks", self.agent_checks)
        add("PUT POST", "/v1/agent/check/register", self.check_register)
        add("PUT POST", "/v1/agent/check/deregister/:", self.check_deregister)
        add("PUT POST", "/v1/agent/check/pass/:", self.check_pass)
        add("PUT POST", "/v1/agent/check/warn/:", self.check_warn)
        add("PUT POST", "/v1/agent/check/fail/:", self.check_fail)
        add("PUT POST", "/v1/agent/check/update/:", self.check_update)
        add("GET", "/v1/agent/self", self.agent_self)
        add("GET", "/v1/agent/members", self.agent_members)
        add("GET", "/v1/catalog/services", self.catalog_services)
        add("GET", "/v1/catalog/service/:", self.catalog_service)
        add("GET", "/v1/catalog/nodes", self.catalog_nodes)
        add("GET", "/v1/catalog/datacenters", self.catalog_datacenters)
        add("GET", "/v1/health/service/:", self.health_service)
        add("GET", "/v1/health/checks/:", self.health_checks)
        add("GET", "/v1/health/state/:", self.health_state)
        add("GET", "/v1/health/node/:", self.health_node)
        add("GET", "/v1/status/leader", self.status_leader)
        add("GET", "/v1/status/peers", self.status_peers)

    # -- helpers -----------------------------------------------------------------------------

    def _indexed(self, body: bytes, index: int) -> Response:
        return Response(200, body, headers=[(b"x-consul-index", str(index).encode())])

    @staticmethod
    def _param(req: Request, what: str) -> str:
        value = req.params[0] if req.params else ""
        if not value:
            raise ValidationError(f"missing {what} in the path", field=what)
        return value

    # -- agent: services ---------------------------------------------------------------------

    async def service_register(self, req: Request) -> Response:
        service, checks = parse_service(await req.json(), owner=self.catalog.node)
        await self.catalog.register(
            service, checks, replace_existing_checks=req.flag("replace-existing-checks")
        )
        return _OK

    async def service_deregister(self, req: Request) -> Response:
        await self.catalog.deregister(self._param(req, "service ID"))
        return _OK

    async def service_maintenance(self, req: Request) -> Response:
        service_id = self._param(req, "service ID")
        if req.arg("enable") is None:
            raise ValidationError(
                "missing value for enable (use ?enable=true or ?enable=false)", field="enable"
            )
        await self.catalog.set_maintenance(service_id, req.flag("enable"), req.arg("reason") or "")
        return _OK

    async def node_maintenance(self, req: Request) -> Response:
        if req.arg("enable") is None:
            raise ValidationError(
                "missing value for enable (use ?enable=true or ?enable=false)", field="enable"
            )
        await self.catalog.set_maintenance(None, req.flag("enable"), req.arg("reason") or "")
        return _OK

    async def agent_services(self, req: Request) -> Response:
        index = await block(self.state, SERVICES, req.arg("index"), req.arg("wait"))
        body = self._body(
            req,
            ("agent-services",),
            self.state.topics.revision(SERVICES),
            lambda: {sid: self.shapes.agent_service(svc) for sid, svc in sorted(self.state.services.items())},
        )
        return self._indexed(body, index)

    async def agent_service(self, req: Request) -> Response:
        service_id = self._param(req, "service ID")
        svc = self.state.services.get(service_id)
        if svc is None:
            raise NotFound(f"unknown service ID: {service_id}")
        out = self.shapes.agent_service(svc)
        out["ContentHash"] = hashlib.sha256(orjson.dumps(out)).hexdigest()[:16]
        index = self.state.topic_index(service_topic(svc.name))
        return self._indexed(orjson.dumps(out), index)

    # -- agent: checks -----------------------------------------------------------------------

    async def agent_checks(self, req: Request) -> Response:
        index = await block(self.state, CHECKS, req.arg("index"), req.arg("wait"))
        body = self._body(
            req,
            ("agent-checks",),
            self.state.topics.revision(CHECKS),
            lambda: {cid: self._check_json(cid) for cid in sorted(self.state.checks)},
        )
        return self._indexed(body, index)

    def _body(self, req: Request, key: tuple[Any, ...], revision: int, build: Callable[[], Any]) -> bytes:
        """The cached answer for `key` at `revision`, narrowed by Consul's ?filter= if given."""
        predicate, expression = self._filter(req)
        if predicate is None:
            return self.cache.get(key, revision, build)
        return self.cache.get(
            (*key, "filter", expression), revision, lambda: apply_filter(predicate, build())
        )

    @staticmethod
    def _filter(req: Request) -> tuple[Predicate | None, str]:
        """The compiled ?filter= expression (None when absent or blank), and its text."""
        expression = req.arg("filter") or ""
        return filter_arg(expression), expression

    def _check_json(self, check_id: str) -> dict[str, object]:
        check = self.state.checks[check_id]
        svc = self.state.services.get(check.service_id) if check.service_id else None
        return self.shapes.health_check(check, svc, self.state.indexes.get("checks/" + check_id))

    async def check_register(self, req: Request) -> Response:
        definition = parse_check_body(await req.json())
        await self.catalog.register_check(definition)
        return _OK

    async def check_deregister(self, req: Request) -> Response:
        await self.catalog.deregister_check(self._param(req, "check ID"))
        return _OK

    async def _ttl(self, req: Request, status: Status) -> Response:
        note = req.arg("note") or ""
        await self.runner.ttl_update(self._param(req, "check ID"), status, note)
        return _OK

    async def check_pass(self, req: Request) -> Response:
        return await self._ttl(req, Status.PASSING)

    async def check_warn(self, req: Request) -> Response:
        return await self._ttl(req, Status.WARNING)

    async def check_fail(self, req: Request) -> Response:
        return await self._ttl(req, Status.CRITICAL)

    async def check_update(self, req: Request) -> Response:
        check_id = self._param(req, "check ID")
        fields = Fields(await req.json(), "Body")
        try:
            status = parse_status(fields.text("Status") or "")
        except ValueError as exc:
            raise ValidationError(f"Body.Status: {exc}", field="Status") from None
        if status is Status.MAINTENANCE:
            raise ValidationError("Body.Status must be passing, warning or critical", field="Status")
        await self.runner.ttl_update(check_id, status, fields.text("Output"))
        return _OK

    # -- agent: self -------------------------------------------------------------------------

    def _member(self) -> dict[str, object]:
        return {
            "Name": self.catalog.node,
            "Addr": self.config.node_address,
            "Port": 8301,
            "Tags": {"dc": self.config.datacenter, "role": "consul", "build": __version__},
            "Status": 1,
        }

    async def agent_self(self, req: Request) -> Response:
        store = self.catalog.store
        return json_response(
            {
                "Config": {
                    "Datacenter": self.config.datacenter,
                    "NodeName": self.catalog.node,
                    "NodeID": self.shapes.node_id,
                    "Server": True,
                    "Revision": "roost",
                    "Version": __version__,
                    "Product": "roost",
                },
                "DebugConfig": {
                    "Store": store.name,
                    "HTTPAddr": self.config.http_addr,
                    "DNSAddr": self.config.dns_addr,
                },
                "Member": self._member(),
                "Meta": {"consul-network-segment": ""},
                "Stats": {
                    "catalog": {
                        "index": str(self.state.index),
                        "services": str(len(self.state.by_name)),
                        "instances": str(len(self.state.services)),
                        "checks": str(len(self.state.checks)),
                    }
                },
            }
        )

    async def agent_members(self, req: Request) -> Response:
        return json_response([self._member()])

    # -- catalog -----------------------------------------------------------------------------

    async def catalog_services(self, req: Request) -> Response:
        index = await block(self.state, SERVICES, req.arg("index"), req.arg("wait"))
        predicate, expression = self._filter(req)
        if predicate is None:
            body = self.cache.get(
                ("catalog-services",), self.state.topics.revision(SERVICES), self.state.service_names
            )
            return self._indexed(body, index)

        def build() -> dict[str, list[str]]:
            # As Consul: the filter sees each instance (ServiceName, ServiceTags, ServiceMeta, ...)
            kept = {
                entry.service.id
                for name in self.state.by_name
                for entry in self.state.instances(name)
                if predicate(self.shapes.catalog_service(entry))
            }
            return self.state.service_names(kept)

        key = ("catalog-services", "filter", expression)
        return self._indexed(self.cache.get(key, self.state.topics.revision(SERVICES), build), index)

    async def catalog_service(self, req: Request) -> Response:
        name = self._param(req, "service name")
        tags = tuple(req.args("tag"))
        topic = service_topic(name)
        index = await block(self.state, topic, req.arg("index"), req.arg("wait"))
        body = self._body(
            req,
            ("catalog-service", name.lower(), tags),
            self.state.topics.revision(topic),
            lambda: [self.shapes.catalog_service(e) for e in self.state.instances(name, tags)],
        )
        return self._indexed(body, index)

    async def catalog_nodes(self, req: Request) -> Response:
        index = await block(self.state, NODES, req.arg("index"), req.arg("wait"))
        return self._indexed(orjson.dumps([self.shapes.node_json(index)]), index)

    async def catalog_datacenters(self, req: Request) -> Response:
        return json_response([self.config.datacenter])

    # -- health ------------------------------------------------------------------------------

    async def health_service(self, req: Request) -> Response:
        name = self._param(req, "service name")
        tags = tuple(req.args("tag"))
        passing = req.flag("passing")
        topic = service_topic(name)
        index = await block(self.state, topic, req.arg("index"), req.arg("wait"))

        def build() -> list[object]:
            entries = self.state.instances(name, tags)
            if passing:
                entries = [e for e in entries if e.status is Status.PASSING]
            return [self.shapes.health_entry(e, self.state.indexes) for e in entries]

        key = ("health-service", name.lower(), tags, passing)
        return self._indexed(self._body(req, key, self.state.topics.revision(topic), build), index)

    async def health_checks(self, req: Request) -> Response:
        name = self._param(req, "service name")
        topic = service_topic(name)
        index = await block(self.state, topic, req.arg("index"), req.arg("wait"))

        def build() -> list[object]:
            out: list[object] = []
            for entry in self.state.instances(name):
                out.extend(self._check_json(c.id) for c in entry.checks if c.service_id)
            return out

        return self._indexed(
            self._body(req, ("health-checks", name.lower()), self.state.topics.revision(topic), build), index
        )

    async def health_state(self, req: Request) -> Response:
        state = self._param(req, "state").lower()
        if state not in ("any", "passing", "warning", "critical"):
            raise ValidationError(
                f"unknown check state {state!r}: use any, passing, warning or critical", field="state"
            )
        index = await block(self.state, CHECKS, req.arg("index"), req.arg("wait"))

        def build() -> list[object]:
            out: list[object] = []
            serf = self.state.serf
            if state in ("any", serf.status.value):
                out.append(self.shapes.health_check(serf, None, None))
            for cid in sorted(self.state.checks):
                if state == "any" or self.state.checks[cid].status.value == state:
                    out.append(self._check_json(cid))
            return out

        return self._indexed(
            self._body(req, ("health-state", state), self.state.topics.revision(CHECKS), build), index
        )

    async def health_node(self, req: Request) -> Response:
        node = self._param(req, "node")
        index = await block(self.state, CHECKS, req.arg("index"), req.arg("wait"))
        if node != self.catalog.node:
            return self._indexed(b"[]", index)
        checks = [self.shapes.health_check(self.state.serf, None, None)]
        checks += [self._check_json(c.id) for c in self.state.node_checks()[1:]]
        return self._indexed(orjson.dumps(checks), index)

    # -- status ------------------------------------------------------------------------------

    def _leader(self) -> str:
        return f"{self.config.node_address}:8300"

    async def status_leader(self, req: Request) -> Response:
        ok, _ = self.catalog.store.connected()
        return json_response(self._leader() if ok else "")

    async def status_peers(self, req: Request) -> Response:
        return json_response([self._leader()])
