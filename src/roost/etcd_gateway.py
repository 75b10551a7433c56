"""The raw etcd v3 calls roost needs, over etcd's JSON gateway and one pooled aiohttp client.

One client for both sides: the agent's etcd store (`roost.store.etcd`) and the client library's
etcd strategy and registration (`roost.client.strategies.etcd`). It imports nothing from roost.

Why the JSON gateway and not a gRPC client: the gateway is a stable, documented part of etcd's v3
API (``/v3/...`` since etcd 3.4: the same protobuf messages as JSON, keys and values base64), and
roost needs only six of its calls: range, txn, watch (a newline-delimited JSON stream), lease grant,
lease keepalive and authenticate. A gRPC client would bring grpcio and protobuf, whose binary wheels
and version pins are the usual source of breakage, and the asyncio etcd clients on PyPI each follow
one endpoint at a time. Owning the HTTP layer also gives roost what a registry needs from it: short
timeouts so that writes fail fast, and its own failover across the cluster's endpoints.

Why aiohttp and not httpx (which roost's client side uses): side by side against one etcd on this
2-core machine, 32 concurrent puts ran at about 2,000/s through one aiohttp client and about
200/s through one httpx.AsyncClient, whose connection pool slows down as concurrency grows.

Errors leave this module as two types: `EtcdError` (etcd answered with a gRPC error) and
`EtcdUnreachable` (no endpoint answered). Their callers turn both into roost's errors.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import aiohttp
import orjson

# gRPC status codes that etcd uses and the store cares about.
NOT_FOUND = 5
UNAVAILABLE = 14
UNAUTHENTICATED = 16

_RETRY_ELSEWHERE = ("no leader", "leader changed", "not capable", "stopped")
_NOT_PROPOSED = ("no leader", "not capable")  # refused before anything was proposed: safe anywhere


class EtcdError(Exception):
    """etcd answered, with an error."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class EtcdUnreachable(Exception):
    """No etcd endpoint answered in time; a write may or may not have happened."""


def b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


def prefix_end(prefix: str | bytes) -> bytes:
    """The range end that covers every key starting with `prefix` (etcd's GetPrefixRangeEnd)."""
    end = bytearray(prefix.encode() if isinstance(prefix, str) else prefix)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\0"  # every key


class Gateway:
    """A pooled HTTP client for a list of etcd endpoints, failing over between them."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        timeout: float = 3.0,
        connect_timeout: float = 0.5,
        ca_file: str = "",
        cert_file: str = "",
        key_file: str = "",
        username: str = "",
        password: str = "",
    ) -> None:
        if not endpoints:
            raise ValueError("no etcd endpoint given")
        self.endpoints = list(endpoints)
        self._current = 0
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=connect_timeout)
        # Streams stay open while idle: no read timeout (a dead member shows as a closed stream,
        # and a member without a leader cancels the watch, see `stream`).
        self._stream_timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout)
        self._username, self._password = username, password
        self._token = ""
        self._ssl: ssl.SSLContext | bool = True
        if ca_file or cert_file:
            context = ssl.create_default_context(cafile=ca_file or None)
            if cert_file:
                context.load_cert_chain(cert_file, key_file or None)
            self._ssl = context
        self._session: aiohttp.ClientSession | None = None
        self._streams: dict[str, set[aiohttp.ClientResponse]] = {}  # endpoint -> open streams
        self.stream_endpoint = ""  # where the last stream was opened
        self.last_contact = time.monotonic()

    @property
    def where(self) -> str:
        return ",".join(e.split("://", 1)[-1] for e in self.endpoints)

    def rotate(self) -> None:
        """Start the next call at the next endpoint (after a stream on the current one broke),
        unless a call since then already moved on from the endpoint of the last stream."""
        if self.endpoints[self._current] == self.stream_endpoint:
            self._current = (self._current + 1) % len(self.endpoints)

    def _abandon(self, endpoint: str) -> None:
        # A member that does not answer a request (hung, or cut off by the network) sends nothing
        # on its open streams either, and their TCP connections may look alive for minutes: close
        # them, so the watch resumes on another member from its last revision.
        for resp in list(self._streams.get(endpoint, ())):
            resp.close()

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=64, ssl=self._ssl),
                timeout=self._timeout,
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _headers(self) -> dict[str, str]:
        return {"authorization": self._token} if self._token else {}

    async def _post(
        self, endpoint: str, path: str, payload: bytes, timeout: aiohttp.ClientTimeout | None = None
    ) -> dict[str, Any]:
        async with self.session().post(
            endpoint + path, data=payload, headers=self._headers(), timeout=timeout or self._timeout
        ) as resp:
            return _decode(resp.status, await resp.read())

    def _in_turn(self) -> Iterator[tuple[int, str]]:
        """Each endpoint once, starting at the one that answered last."""
        count = len(self.endpoints)
        for attempt in range(count):
            index = (self._current + attempt) % count
            yield index, self.endpoints[index]

    async def _log_in(self, endpoint: str) -> None:
        if self._username and not self._token:
            await self._authenticate(endpoint)

    async def _authenticate(self, endpoint: str) -> None:
        self._token = ""
        data = await self._post(
            endpoint,
            "/v3/auth/authenticate",
            orjson.dumps({"name": self._username, "password": self._password}),
        )
        self._token = str(data.get("token", ""))

    async def call(
        self, path: str, body: dict[str, Any], *, idempotent: bool = True, timeout: float | None = None
    ) -> dict[str, Any]:
        """POST one request, trying each endpoint in turn from the last one that worked.

        A request that could not connect is always tried on the next endpoint; one that was sent
        but got no answer is retried elsewhere only when `idempotent` (a txn is not)."""
        payload = orjson.dumps(body)
        limit = None
        if timeout is not None:
            limit = aiohttp.ClientTimeout(total=timeout, sock_connect=self._timeout.sock_connect)
        errors: list[str] = []
        for index, endpoint in self._in_turn():
            try:
                await self._log_in(endpoint)
                try:
                    data = await self._post(endpoint, path, payload, limit)
                except EtcdError as exc:
                    if exc.code != UNAUTHENTICATED or not self._username:
                        raise
                    await self._authenticate(endpoint)  # the token expired: a new one, once more
                    data = await self._post(endpoint, path, payload, limit)
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
                errors.append(f"{endpoint}: {exc or type(exc).__name__}")
                self._abandon(endpoint)
                continue  # never reached etcd: safe to send elsewhere
            except (TimeoutError, aiohttp.ClientError) as exc:
                errors.append(f"{endpoint}: {exc or type(exc).__name__}")
                self._abandon(endpoint)
                if idempotent:
                    continue
                raise EtcdUnreachable(f"etcd at {endpoint} did not answer: {errors[-1]}") from exc
            except EtcdError as exc:
                # A member that lost its leader (or is leaving) cannot serve; another may.
                retry = _RETRY_ELSEWHERE if idempotent else _NOT_PROPOSED
                if exc.code == UNAVAILABLE and any(m in exc.message for m in retry):
                    errors.append(f"{endpoint}: {exc.message}")
                    continue
                self.last_contact = time.monotonic()
                raise
            self._current = index
            self.last_contact = time.monotonic()
            return data
        raise EtcdUnreachable(f"no etcd endpoint answered ({'; '.join(errors)})")

    @contextlib.asynccontextmanager
    async def stream(self, path: str, body: dict[str, Any]) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        """Open a streaming call (watch) on the first endpoint that accepts it.

        The stream asks for a leader (gRPC metadata ``hasleader``): a member cut off from the
        quorum cancels it, so the caller reconnects elsewhere instead of waiting in silence."""
        payload = orjson.dumps(body)
        errors: list[str] = []
        for index, endpoint in self._in_turn():
            try:
                await self._log_in(endpoint)
                # A hung member still accepts TCP connections (the kernel does): bound the wait
                # for the answer's head, and only then let the stream idle without a limit.
                resp = await asyncio.wait_for(
                    self.session().post(
                        endpoint + path,
                        data=payload,
                        headers={**self._headers(), "grpc-metadata-hasleader": "true"},
                        timeout=self._stream_timeout,
                    ),
                    self._timeout.total,
                )
            except (TimeoutError, aiohttp.ClientError) as exc:
                errors.append(f"{endpoint}: {exc or type(exc).__name__}")
                continue
            try:
                if resp.status != 200:
                    _decode(resp.status, await resp.read())
                self._current = index
                self.last_contact = time.monotonic()
                self._streams.setdefault(endpoint, set()).add(resp)
                self.stream_endpoint = endpoint
                yield self._lines(resp, endpoint)
                return
            finally:
                self._streams.get(endpoint, set()).discard(resp)
                resp.release()
                resp.close()
        raise EtcdUnreachable(f"no etcd endpoint answered ({'; '.join(errors)})")

    async def _lines(self, resp: aiohttp.ClientResponse, endpoint: str) -> AsyncIterator[dict[str, Any]]:
        # Split lines ourselves: one watch message can be far longer than aiohttp's line limit.
        buffer = b""
        while True:
            try:
                chunk = await resp.content.readany()
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise EtcdUnreachable(f"the stream from {endpoint} broke: {exc!r}") from exc
            if not chunk:
                if resp.content.at_eof():
                    return
                continue
            self.last_contact = time.monotonic()
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.strip():
                    yield _message(line)


def _message(line: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise EtcdError(2, f"etcd sent a line that is not JSON: {line[:200]!r}") from exc
    if not isinstance(data, dict):
        raise EtcdError(2, f"etcd sent {type(data).__name__}, not an object")
    if "error" in data:
        error = data["error"]
        if isinstance(error, dict):
            code = error.get("grpc_code", error.get("code", 2))
            raise EtcdError(int(code or 2), str(error.get("message")))
        raise EtcdError(int(data.get("code", 2)), str(data.get("message", error)))
    return data


def _decode(status: int, body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise EtcdError(2, f"etcd answered HTTP {status}: {body[:200]!r}") from None
    if not isinstance(data, dict):
        raise EtcdError(2, f"etcd answered HTTP {status} with {type(data).__name__}")
    if status != 200 or "error" in data:
        raise EtcdError(int(data.get("code", 2)), str(data.get("message") or data.get("error") or body[:200]))
    return data
