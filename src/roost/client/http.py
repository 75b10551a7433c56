"""HTTP to services by name, over httpx: per-request discovery, balancing, breakers and retries.

:class:`RoostTransport` is an httpx transport. A request to ``http://<service>.service.roost/path``
goes to an instance of ``<service>`` chosen by the discovery's policy; any other host is passed to
the inner transport untouched. Per attempt it:

1. picks an instance whose circuit breaker lets the request through (instances already tried in
   this request are skipped while others remain);
2. sends with a per-try timeout, bounded by what is left of the overall deadline;
3. reports the outcome to the policy (latency, ok, ``Retry-After``) and the breaker. Connection
   errors, timeouts and 5xx answers are failures; other answers are successes;
4. on a failure, retries on another instance when the request is idempotent (GET, HEAD, OPTIONS,
   PUT, DELETE, or with an ``Idempotency-Key`` header) or never reached the backend (connect error),
   the retry budget allows it, and time is left; it waits a full-jitter backoff first.

:class:`ServiceClient` wraps an ``httpx.AsyncClient`` over that transport: ``await
client.get("payment-service", "/api/process")``. :class:`SyncServiceClient` runs the same on a
:class:`~roost.client.discovery.SyncDiscovery`'s background loop for code without an event loop.
"""

from __future__ import annotations

import asyncio
import random
import time
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from roost.client.discovery import Discovery, SyncDiscovery
from roost.client.instance import Instance
from roost.client.retry import Backoff, RetryBudget
from roost.client.tls import default_ssl_context
from roost.errors import NoHealthyInstance

DEFAULT_DOMAIN = "service.roost"
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
TAG_EXTENSION = "roost.tag"  # request.extensions[...]: only instances with this tag


def retry_after_seconds(value: str | None, now_epoch: float | None = None) -> float | None:
    """``Retry-After`` as seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(when - (time.time() if now_epoch is None else now_epoch), 0.0)


class RoostTransport(httpx.AsyncBaseTransport):
    """Resolves ``http://<service>.<domain>/...`` per request (see the module docstring).

    Args:
        discovery: the cache, policy and breakers to use.
        domain: the pseudo-domain that marks service names.
        inner: the transport that does the I/O (a pooled ``httpx.AsyncHTTPTransport`` by default).
        retries: extra attempts after the first.
        per_try_timeout: seconds for one attempt, up to the response headers.
        deadline: seconds for the whole request, retries and backoff included (None: no limit).
        budget: the retry budget shared by every request through this transport.
        backoff_base, backoff_cap: full-jitter backoff between attempts.
    """

    def __init__(
        self,
        discovery: Discovery,
        *,
        domain: str = DEFAULT_DOMAIN,
        inner: httpx.AsyncBaseTransport | None = None,
        retries: int = 2,
        per_try_timeout: float | None = 5.0,
        deadline: float | None = 15.0,
        budget: RetryBudget | None = None,
        backoff_base: float = 0.01,
        backoff_cap: float = 0.2,
        rng: random.Random | None = None,
    ) -> None:
        self.discovery = discovery
        self.suffix = "." + domain.strip(".")
        self.inner = inner or httpx.AsyncHTTPTransport(
            verify=default_ssl_context(),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=200),
        )
        self.retries = retries
        self.per_try_timeout = per_try_timeout
        self.deadline = deadline
        self.budget = budget or RetryBudget()
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._rng = rng or random.Random()

    def service_of(self, request: httpx.Request) -> str | None:
        host = request.url.host
        return host[: -len(self.suffix)] if host.endswith(self.suffix) else None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        service = self.service_of(request)
        if service is None:
            return await self.inner.handle_async_request(request)
        await request.aread()  # buffered, so a retry can send it again
        clock = self.discovery.clock
        start = clock()
        ends = None if self.deadline is None else start + self.deadline
        tag = request.extensions.get(TAG_EXTENSION)
        idempotent = request.method in IDEMPOTENT or "idempotency-key" in request.headers
        backoff = Backoff(self.backoff_base, self.backoff_cap, self._rng)
        self.budget.record_request(start)
        tried: set[str] = set()
        attempt = 0
        inst = await self.discovery.pick(service, tag)
        while True:
            tried.add(inst.key)
            if not self.discovery.breakers[inst.key].allow(clock()):
                # Lost a half-open probe slot to a concurrent request: try another instance.
                if attempt >= self.retries:
                    raise NoHealthyInstance(service, f"no instance of {service!r} accepts requests now")
                attempt += 1
                inst = await self.discovery.pick(service, tag, exclude=frozenset(tried))
                continue
            response, error, reached = await self._attempt(request, inst, ends)
            now = clock()
            if error is None and response is not None and response.status_code < 500:
                return response
            retryable = (idempotent or not reached) and attempt < self.retries
            if retryable and ends is not None and now >= ends:
                retryable = False
            if retryable and not self.budget.can_retry(now):
                retryable = False
            next_inst = None
            if retryable:
                try:
                    next_inst = await self.discovery.pick(service, tag, exclude=frozenset(tried))
                except NoHealthyInstance:
                    next_inst = None  # nowhere left to go: report this attempt's outcome
            if next_inst is None:
                if response is not None:
                    return response
                assert error is not None
                raise error
            self.budget.try_withdraw(now)
            if response is not None:
                await response.aclose()
            attempt += 1
            inst = next_inst
            delay = backoff.next_delay()
            if ends is not None:
                delay = min(delay, max(ends - now, 0.0))
            if delay > 0:
                await asyncio.sleep(delay)

    async def _attempt(
        self, request: httpx.Request, inst: Instance, ends: float | None
    ) -> tuple[httpx.Response | None, Exception | None, bool]:
        """One try: (response, error, whether the request may have reached the backend)."""
        clock = self.discovery.clock
        policy = self.discovery.policy(inst.service)
        breaker = self.discovery.breakers[inst.key]
        t0 = clock()
        timeout = self.per_try_timeout
        if ends is not None:
            left = ends - t0
            timeout = left if timeout is None else min(timeout, left)
        url = request.url.copy_with(host=inst.address, port=inst.port)
        upstream = httpx.Request(
            request.method,
            url,
            headers=request.headers,
            content=request.content,
            extensions=request.extensions,
        )
        policy.on_start(inst, t0)
        response: httpx.Response | None = None
        error: Exception | None = None
        reached = True
        try:
            if timeout is not None and timeout <= 0:
                raise TimeoutError
            async with asyncio.timeout(timeout):
                response = await self.inner.handle_async_request(upstream)
        except TimeoutError:
            error = httpx.ReadTimeout(
                f"no answer from {inst.hostport} within {timeout:.3f}s", request=request
            )
        except httpx.ConnectError as exc:
            error, reached = exc, False
        except httpx.TransportError as exc:
            error = exc
        except BaseException:
            policy.on_result(inst, now=clock(), latency=clock() - t0, ok=False)
            raise
        now = clock()
        ok = error is None and response is not None and response.status_code < 500
        retry_after = None
        if response is not None and response.status_code in (429, 503):
            retry_after = retry_after_seconds(response.headers.get("retry-after"))
        policy.on_result(inst, now=now, latency=now - t0, ok=ok, retry_after=retry_after)
        if ok:
            breaker.record_success(now)
        else:
            breaker.record_failure(now)
        if response is not None:
            response.request = request
        return response, error, reached

    async def aclose(self) -> None:
        await self.inner.aclose()


class ServiceClient:
    """An HTTP client that calls services by name. Async; see :class:`SyncServiceClient`.

    ``await client.get("payment-service", "/api/process")`` or, through :attr:`http` (an
    ``httpx.AsyncClient``), ``await client.http.get("http://payment-service.service.roost/api")``.
    Keyword arguments not listed are passed to ``httpx.AsyncClient`` (headers, auth, cookies...).

    Args:
        discovery: the :class:`Discovery` to resolve names with.
        Other arguments: see :class:`RoostTransport`.

    Each request method takes ``tag=`` to send only to instances with that tag (on :attr:`http`,
    pass ``extensions={"roost.tag": ...}``).
    """

    def __init__(
        self,
        discovery: Discovery,
        *,
        domain: str = DEFAULT_DOMAIN,
        retries: int = 2,
        per_try_timeout: float | None = 5.0,
        deadline: float | None = 15.0,
        budget: RetryBudget | None = None,
        inner: httpx.AsyncBaseTransport | None = None,
        **httpx_kwargs: Any,
    ) -> None:
        self.discovery = discovery
        self.domain = domain.strip(".")
        self.transport = RoostTransport(
            discovery,
            domain=self.domain,
            inner=inner,
            retries=retries,
            per_try_timeout=per_try_timeout,
            deadline=deadline,
            budget=budget,
        )
        httpx_kwargs.setdefault("timeout", None)
        httpx_kwargs.setdefault(
            "verify", default_ssl_context()
        )  # the transport applies per-try timeout and deadline
        self.http = httpx.AsyncClient(transport=self.transport, **httpx_kwargs)

    def url(self, service: str, path: str) -> str:
        return f"http://{service}.{self.domain}/{path.lstrip('/')}"

    async def request(self, method: str, service: str, path: str = "/", **kwargs: Any) -> httpx.Response:
        """Send one request to an instance of ``service``; raises NoHealthyInstance or httpx errors."""
        tag = kwargs.pop("tag", None)
        if tag is not None:
            kwargs["extensions"] = {**kwargs.get("extensions", {}), TAG_EXTENSION: tag}
        return await self.http.request(method, self.url(service, path), **kwargs)

    async def get(self, service: str, path: str = "/", **kwargs: Any) -> httpx.Response:
        return await self.request("GET", service, path, **kwargs)

    async def post(self, service: str, path: str = "/", **kwargs: Any) -> httpx.Response:
        return await self.request("POST", service, path, **kwargs)

    async def put(self, service: str, path: str = "/", **kwargs: Any) -> httpx.Response:
        return await self.request("PUT", service, path, **kwargs)

    async def delete(self, service: str, path: str = "/", **kwargs: Any) -> httpx.Response:
        return await self.request("DELETE", service, path, **kwargs)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> ServiceClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class SyncServiceClient:
    """:class:`ServiceClient` for code without an event loop. Responses come back fully read.

    Runs on the background loop of a :class:`SyncDiscovery`; same arguments as ServiceClient.
    """

    def __init__(self, discovery: SyncDiscovery, **kwargs: Any) -> None:
        self.sync_discovery = discovery

        async def make() -> ServiceClient:
            return ServiceClient(discovery.discovery, **kwargs)

        self.client: ServiceClient = discovery.call(make())

    def request(self, method: str, service: str, path: str = "/", **kwargs: Any) -> httpx.Response:
        async def run() -> httpx.Response:
            response = await self.client.request(method, service, path, **kwargs)
            await response.aread()
            return response

        result: httpx.Response = self.sync_discovery.call(run())
        return result

    def get(self, service: str, path: str = "/", **kwargs: Any) -> httpx.Response:
        return self.request("GET", service, path, **kwargs)

    def post(self, service: str, path: str = "/", **kwargs: Any) -> httpx.Response:
        return self.request("POST", service, path, **kwargs)

    def put(self, service: str, path: str = "/", **kwargs: Any) -> httpx.Response:
        return self.request("PUT", service, path, **kwargs)

    def delete(self, service: str, path: str = "/", **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", service, path, **kwargs)

    def close(self) -> None:
        self.sync_discovery.call(self.client.aclose())

    def __enter__(self) -> SyncServiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
