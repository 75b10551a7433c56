"""The push-fed cache: one watch per service, answers from memory.

The first ``discover("web")`` starts a background task that follows the strategy's updates for
``web`` and waits for the first answer; every later call answers from memory (a dict lookup and a tag
filter). When the strategy fails, the cache keeps the last instances for ``max_stale`` seconds, logs
a warning, and retries with full-jitter exponential backoff (see :mod:`roost.client.retry`) so that
clients reconnecting to a recovering registry spread out instead of arriving together.

:class:`Discovery` is the asyncio flavour; :class:`SyncDiscovery` runs one in a background thread
for callers without an event loop (Flask, Django, scripts).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import random
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from roost.client.balance import Policy, make_policy
from roost.client.breaker import BreakerConfig, Breakers
from roost.client.instance import Change, Instance, diff
from roost.client.retry import Backoff
from roost.client.strategies.base import Strategy
from roost.errors import NoHealthyInstance, Unavailable

log = logging.getLogger("roost.client")

T = TypeVar("T")
PolicySpec = str | Callable[[], Policy]


@dataclass(slots=True)
class _Entry:
    service: str
    policy: Policy
    instances: tuple[Instance, ...] = ()
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    last_ok: float = 0.0  # when the strategy last answered
    error: BaseException | None = None  # set while the strategy is failing
    warned: bool = False
    task: asyncio.Task[None] | None = None
    subscribers: set[asyncio.Queue[Change | None]] = field(default_factory=set)  # None: closed
    version: int = 0  # bumped on every change of instances


class Discovery:
    """Find instances of services by name, from a cache the strategy keeps up to date.

    Args:
        strategy: where instances come from (:func:`roost.client.create_discovery` picks one from the
            environment).
        policy: load-balancing policy name or factory, one policy per service (default round robin).
        breaker: thresholds of the per-instance circuit breakers that :meth:`pick` honours.
        max_stale: seconds to keep serving the last known instances while the strategy fails; after
            that, :meth:`discover` raises :class:`~roost.errors.Unavailable`.
        first_wait: seconds the first :meth:`discover` of a service waits for an answer.
        backoff_base, backoff_cap: reconnect backoff (full jitter) after a strategy failure.
        clock: monotonic seconds; breakers and policies are driven by it.
        rng: randomness for policies and backoff (tests pass a seeded one).
    """

    def __init__(
        self,
        strategy: Strategy,
        *,
        policy: PolicySpec = "round_robin",
        breaker: BreakerConfig | None = None,
        max_stale: float = 300.0,
        first_wait: float = 5.0,
        backoff_base: float = 0.2,
        backoff_cap: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.strategy = strategy
        self._policy = policy
        self.breakers = Breakers(breaker)
        self.max_stale = max_stale
        self.first_wait = first_wait
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.clock = clock
        self._rng = rng or random.Random()
        self._entries: dict[str, _Entry] = {}
        self._closed = False

    # -- reads ----------------------------------------------------------------------------------

    async def discover(self, name: str, tag: str | tuple[str, ...] | None = None) -> list[Instance]:
        """The healthy instances of ``name`` (with ``tag``, if given), from memory once warm.

        Raises:
            Unavailable: no answer within ``first_wait`` on a cold cache, or the strategy has been
                failing for longer than ``max_stale``.
        """
        entry = self._entries.get(name)
        if entry is None or not entry.ready.is_set():
            entry = await self._warm(name)
        return self._read(entry, tag)

    def cached(self, name: str, tag: str | tuple[str, ...] | None = None) -> list[Instance] | None:
        """Like :meth:`discover` without waiting: ``None`` when the service is not warm yet."""
        entry = self._entries.get(name)
        if entry is None or not entry.ready.is_set():
            return None
        return self._read(entry, tag)

    def _read(self, entry: _Entry, tag: str | tuple[str, ...] | None) -> list[Instance]:
        if entry.error is not None:
            age = self.clock() - entry.last_ok
            if age > self.max_stale:
                raise Unavailable(
                    f"discovery of {entry.service!r} has failed for {age:.0f}s (max_stale "
                    f"{self.max_stale:g}s): {entry.error}"
                )
        if tag is None:
            return list(entry.instances)
        return [i for i in entry.instances if i.has_tags(tag)]

    async def pick(
        self, name: str, tag: str | tuple[str, ...] | None = None, *, exclude: frozenset[str] = frozenset()
    ) -> Instance:
        """One instance of ``name`` chosen by the service's policy, skipping instances whose circuit
        breaker is open and the instance keys in ``exclude`` (already tried).

        Raises:
            NoHealthyInstance: there is no instance, or every one is excluded or has an open breaker.
        """
        instances = await self.discover(name, tag)
        return self.choose(name, instances, exclude)

    def choose(self, name: str, instances: list[Instance], exclude: frozenset[str] = frozenset()) -> Instance:
        """The policy's choice among ``instances`` (see :meth:`pick`), without touching the cache."""
        if not instances:
            raise NoHealthyInstance(name)
        now = self.clock()
        candidates = ([i for i in instances if i.key not in exclude] or instances) if exclude else instances
        usable = candidates
        tripped = self.breakers.tripped
        if tripped:
            usable = []
            for inst in candidates:
                b = self.breakers.get(inst.key) if inst.key in tripped else None
                if b is None or b.available(now):
                    usable.append(inst)
            if not usable:
                raise NoHealthyInstance(
                    name,
                    f"all {len(candidates)} instances of {name!r} have an open circuit breaker; failing fast",
                )
        first = usable[0].priority
        for inst in usable:
            if inst.priority != first:
                best = min(i.priority for i in usable)
                usable = [i for i in usable if i.priority == best]
                break
        return self.policy(name).pick(usable, now)

    def policy(self, name: str) -> Policy:
        entry = self._entries.get(name)
        if entry is None:
            entry = self._entry(name)
        return entry.policy

    async def watch(self, name: str) -> AsyncIterator[Change]:
        """Yield each change (added / removed / changed instance) of ``name`` as it happens, starting
        with an ``added`` for every instance already known."""
        q: asyncio.Queue[Change | None] = asyncio.Queue()
        entry = self._entries.get(name) or self._entry(name)
        self._start(entry)
        entry.subscribers.add(q)
        try:
            if entry.ready.is_set():
                for current in diff((), entry.instances):
                    q.put_nowait(current)
            while (change := await q.get()) is not None:
                yield change
        finally:
            entry.subscribers.discard(q)

    async def wait_for_change(self, name: str, version: int, timeout: float) -> int:
        """Wait until the instance list of ``name`` changes past ``version``; return the new version."""
        entry = self._entries.get(name) or self._entry(name)
        self._start(entry)
        q: asyncio.Queue[Change | None] = asyncio.Queue()
        entry.subscribers.add(q)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    while entry.version <= version:
                        await q.get()
        finally:
            entry.subscribers.discard(q)
        return entry.version

    def version(self, name: str) -> int:
        entry = self._entries.get(name)
        return entry.version if entry else 0

    # -- the watch loop -------------------------------------------------------------------------

    def _entry(self, name: str) -> _Entry:
        policy = make_policy(self._policy, self._rng) if isinstance(self._policy, str) else self._policy()
        entry = self._entries[name] = _Entry(name, policy)
        return entry

    def _start(self, entry: _Entry) -> None:
        if self._closed:
            raise Unavailable("discovery is closed")
        if entry.task is None or entry.task.done():
            entry.task = asyncio.get_running_loop().create_task(
                self._follow(entry), name=f"roost-discovery-{entry.service}"
            )

    async def _warm(self, name: str) -> _Entry:
        entry = self._entries.get(name) or self._entry(name)
        self._start(entry)
        try:
            async with asyncio.timeout(self.first_wait):
                await entry.ready.wait()
        except TimeoutError:
            why = f": {entry.error}" if entry.error else ""
            raise Unavailable(f"no answer about {name!r} within {self.first_wait:g}s{why}") from None
        return entry

    async def _follow(self, entry: _Entry) -> None:
        backoff = Backoff(self.backoff_base, self.backoff_cap, self._rng)
        while True:
            try:
                async for instances in self.strategy.updates(entry.service):
                    self._apply(entry, instances)
                    backoff.reset()
                raise Unavailable(f"{self.strategy.name} stopped sending updates")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                entry.error = exc
                delay = backoff.next_delay()
                if entry.ready.is_set() and not entry.warned:
                    entry.warned = True
                    log.warning(
                        "discovery of %r via %s failed (%s); serving %d cached instances for up to %gs",
                        entry.service,
                        self.strategy.name,
                        exc,
                        len(entry.instances),
                        self.max_stale,
                    )
                else:
                    log.debug("discovery of %r failed (%s); retrying in %.2fs", entry.service, exc, delay)
                await asyncio.sleep(delay)

    def _apply(self, entry: _Entry, instances: tuple[Instance, ...]) -> None:
        entry.last_ok = self.clock()
        if entry.error is not None:
            if entry.warned:
                log.warning("discovery of %r via %s recovered", entry.service, self.strategy.name)
            entry.error, entry.warned = None, False
        changes = diff(entry.instances, instances)
        first = not entry.ready.is_set()
        entry.instances = instances
        entry.ready.set()
        if not changes:
            return
        entry.version += 1
        keep = {i.key for i in instances}
        entry.policy.forget(keep)
        if not first:
            self.breakers.forget(
                keep | {k for e in self._entries.values() for k in (i.key for i in e.instances)}
            )
        for q in entry.subscribers:
            for change in changes:
                q.put_nowait(change)

    async def aclose(self) -> None:
        """Stop every watch (ending the ``watch()`` iterators) and close the strategy."""
        self._closed = True
        for entry in self._entries.values():
            for q in entry.subscribers:
                q.put_nowait(None)
        tasks = [e.task for e in self._entries.values() if e.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.strategy.aclose()

    async def __aenter__(self) -> Discovery:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class SyncDiscovery:
    """:class:`Discovery` for code without an event loop: a daemon thread runs the async cache.

    Warm reads (:meth:`discover`, :meth:`pick`) do not cross threads: they read the cache directly
    (its instance lists are immutable tuples replaced whole). Takes the same arguments as Discovery.
    """

    def __init__(self, strategy: Strategy, **kwargs: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="roost-discovery", daemon=True)
        self._thread.start()
        self._lock = threading.Lock()
        self.discovery: Discovery = self.call(self._make(strategy, kwargs))

    @staticmethod
    async def _make(strategy: Strategy, kwargs: dict[str, Any]) -> Discovery:
        return Discovery(strategy, **kwargs)

    def call(self, coro: Any, timeout: float | None = None) -> Any:
        """Run a coroutine on the discovery's loop and wait for its result."""
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    def discover(self, name: str, tag: str | tuple[str, ...] | None = None) -> list[Instance]:
        got = self.discovery.cached(name, tag)
        if got is not None:
            return got
        result: list[Instance] = self.call(self.discovery.discover(name, tag))
        return result

    def pick(
        self, name: str, tag: str | tuple[str, ...] | None = None, *, exclude: frozenset[str] = frozenset()
    ) -> Instance:
        instances = self.discover(name, tag)
        with self._lock:
            return self.discovery.choose(name, instances, exclude)

    def watch(self, name: str, timeout: float | None = None) -> Iterator[Change]:
        """Yield changes as they happen; stops after ``timeout`` seconds without one (None: never)."""
        out: queue.Queue[Change] = queue.Queue()

        async def pump() -> None:
            async for change in self.discovery.watch(name):
                out.put(change)

        fut = asyncio.run_coroutine_threadsafe(pump(), self.loop)
        try:
            while True:
                try:
                    yield out.get(timeout=timeout)
                except queue.Empty:
                    return
        finally:
            fut.cancel()

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.call(self.discovery.aclose(), timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()

    def __enter__(self) -> SyncDiscovery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
