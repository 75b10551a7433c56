"""Probes: run one check once and say what was seen. HTTP, TCP, gRPC and script, as Consul judges them.

* HTTP: 2xx passing, 429 warning, anything else, a timeout or a refused connection critical. The
  Output is the status line and the start of the body.
* TCP: a connection that opens is passing.
* gRPC: ``grpc.health.v1.Health/Check`` with the service from ``GRPC: "host:port/service"``;
  SERVING is passing. Needs the ``grpcio`` and ``grpcio-health-checking`` packages.
* Script: exit code 0 passing, 1 warning, anything else critical; only when script checks are
  enabled on the agent.

Every Output is at most 4 KiB. A probe never raises: failures are critical results.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

from roost.health.guard import CheckPolicy, TargetRefused, split_target, target_host
from roost.health.http11 import HttpError, HttpPool
from roost.model import CheckDefinition, CheckKind, Status

MAX_OUTPUT = 4096
MAX_REDIRECTS = 10
REDIRECTS = (301, 302, 303, 307, 308)
DEFAULT_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class ProbeResult:
    status: Status
    output: str


def probe_timeout(definition: CheckDefinition) -> float:
    """The check's Timeout (default 10s), capped below its Interval so probes never overlap."""
    timeout = definition.timeout or DEFAULT_TIMEOUT
    if definition.interval:
        timeout = min(timeout, definition.interval * 0.9)
    return max(timeout, 0.001)


def http_status(code: int) -> Status:
    if 200 <= code < 300:
        return Status.PASSING
    if code == 429:
        return Status.WARNING
    return Status.CRITICAL


def _clip(text: str) -> str:
    return text if len(text) <= MAX_OUTPUT else text[: MAX_OUTPUT - 3] + "..."


class Probes:
    """Runs checks; holds what is shared between them (the HTTP pool, gRPC channels)."""

    def __init__(self, policy: CheckPolicy | None = None) -> None:
        self.policy = policy or CheckPolicy()
        self.http = HttpPool()
        self._grpc: dict[tuple[str, str, bool], Any] = {}

    async def run(self, definition: CheckDefinition, timeout: float | None = None) -> ProbeResult:
        timeout = probe_timeout(definition) if timeout is None else timeout
        kind = definition.kind
        try:
            connect_to = None
            if self.policy.restricted and (target := target_host(definition)) is not None:
                connect_to = await self.policy.resolve(*target)
            if kind is CheckKind.HTTP:
                return await self._http(definition, timeout, connect_to)
            if kind is CheckKind.TCP:
                return await self._tcp(definition, timeout, connect_to)
            if kind is CheckKind.GRPC:
                return await self._grpc_check(definition, timeout, connect_to)
            if kind is CheckKind.SCRIPT:
                return await self._script(definition, timeout)
        except TargetRefused as exc:
            return ProbeResult(Status.CRITICAL, f"not probed: {exc}")
        return ProbeResult(Status.CRITICAL, f"{kind.value} checks have no probe")

    async def _http(self, d: CheckDefinition, timeout: float, connect_to: str | None) -> ProbeResult:
        method = d.method or "GET"
        what = f"HTTP {method} {d.http}"
        url = d.http
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            for _ in range(MAX_REDIRECTS + 1):
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    raise TimeoutError
                res = await self.http.request(
                    url,
                    method=method,
                    headers=d.header,
                    body=d.body,
                    verify=not d.tls_skip_verify,
                    timeout=left,
                    connect_to=connect_to,
                )
                if res.status not in REDIRECTS or not res.location:
                    break
                # Follow redirects as Consul (Go's http.Client) does, up to 10, each target judged
                # by the CIDR policy like the first.
                url = urljoin(url, res.location)
                if not url.startswith(("http://", "https://")):
                    break
                if res.status == 303:
                    method = "GET"
                connect_to = None
                if self.policy.restricted:
                    parts = urlsplit(url)
                    port = parts.port or (443 if parts.scheme == "https" else 80)
                    connect_to = await self.policy.resolve(parts.hostname or "", port)
        except TimeoutError:
            return ProbeResult(Status.CRITICAL, f"{what}: timed out after {timeout:g}s")
        except HttpError as exc:
            return ProbeResult(Status.CRITICAL, f"{what}: {exc}")
        if url != d.http:
            what += f" (redirected to {url})"
        body = res.body.decode("utf-8", "replace")
        output = f"{what}: {res.status} {res.reason} Output: {body}"
        return ProbeResult(http_status(res.status), _clip(output))

    async def _tcp(self, d: CheckDefinition, timeout: float, connect_to: str | None) -> ProbeResult:
        host, port = split_target(d.tcp, 0)
        what = f"TCP connect {d.tcp}"
        try:
            async with asyncio.timeout(timeout):
                _, writer = await asyncio.open_connection(connect_to or host, port)
        except TimeoutError:
            return ProbeResult(Status.CRITICAL, f"{what}: timed out after {timeout:g}s")
        except OSError as exc:
            reason = "connection refused" if isinstance(exc, ConnectionRefusedError) else exc.strerror
            return ProbeResult(Status.CRITICAL, f"{what}: {reason or exc}")
        writer.transport.abort()  # no FIN handshake to wait for: the connect is the whole probe
        return ProbeResult(Status.PASSING, f"{what}: Success")

    async def _grpc_check(self, d: CheckDefinition, timeout: float, connect_to: str | None) -> ProbeResult:
        target, _, service = d.grpc.partition("/")
        what = f"gRPC check {d.grpc}"
        try:
            import grpc
            from grpc_health.v1 import health_pb2, health_pb2_grpc
        except ImportError:
            return ProbeResult(
                Status.CRITICAL,
                f"{what}: gRPC checks need the grpcio and grpcio-health-checking packages "
                "(pip install 'roost[grpc]')",
            )
        # With --check-allow-cidr, dial the address the policy approved for this probe (gRPC
        # would otherwise resolve the name itself, maybe to another address), keeping the name
        # as the authority and, with TLS, the name the certificate is checked against.
        dial, options = target, []
        if connect_to is not None:
            host, port = split_target(target, 443 if d.grpc_use_tls else 80)
            dial = f"[{connect_to}]:{port}" if ":" in connect_to else f"{connect_to}:{port}"
            options = [("grpc.default_authority", target)]
            if d.grpc_use_tls:
                options.append(("grpc.ssl_target_name_override", host))
        key = (dial, target, d.grpc_use_tls)
        channel = self._grpc.get(key)
        if channel is None:
            if d.grpc_use_tls:
                channel = grpc.aio.secure_channel(dial, grpc.ssl_channel_credentials(), options=options)
            else:
                channel = grpc.aio.insecure_channel(dial, options=options)
            self._grpc[key] = channel
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code is grpc.StatusCode.DEADLINE_EXCEEDED:
                return ProbeResult(Status.CRITICAL, f"{what}: timed out after {timeout:g}s")
            return ProbeResult(Status.CRITICAL, _clip(f"{what}: {code.name}: {exc.details()}"))
        name = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        if reply.status == health_pb2.HealthCheckResponse.SERVING:
            return ProbeResult(Status.PASSING, f"{what}: {name}")
        return ProbeResult(Status.CRITICAL, f"{what}: {name}")

    async def _script(self, d: CheckDefinition, timeout: float) -> ProbeResult:
        if not self.policy.enable_script_checks:
            return ProbeResult(
                Status.CRITICAL,
                "script checks are disabled on this agent (start it with --enable-script-checks)",
            )
        try:
            proc = await asyncio.create_subprocess_exec(
                *d.args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
        except OSError as exc:
            return ProbeResult(Status.CRITICAL, f"cannot run {d.args[0]!r}: {exc.strerror or exc}")
        try:
            async with asyncio.timeout(timeout):
                out, _ = await proc.communicate()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            return ProbeResult(Status.CRITICAL, f"script timed out after {timeout:g}s")
        text = _clip(out.decode("utf-8", "replace"))
        code = proc.returncode
        if code == 0:
            return ProbeResult(Status.PASSING, text)
        if code == 1:
            return ProbeResult(Status.WARNING, text)
        return ProbeResult(Status.CRITICAL, _clip(f"exit status {code}: {text}"))

    async def close(self) -> None:
        self.http.close()
        channels, self._grpc = list(self._grpc.values()), {}
        for channel in channels:
            with contextlib.suppress(Exception):
                await channel.close()
