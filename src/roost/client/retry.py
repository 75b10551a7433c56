"""Backoff with jitter and a retry budget. Sans-IO: time and randomness are arguments.

:class:`Backoff` is "full jitter" exponential backoff (AWS architecture blog, 2015): the n-th delay
is uniform in ``[0, min(cap, base * 2**n)]``. Spreading reconnects uniformly is what keeps a thousand
clients from arriving together at a registry that has just come back.

:class:`RetryBudget` caps retries at a share of recent requests, as Finagle's ``RetryBudget`` and
Linkerd's retry budgets do: each request deposits ``ratio`` tokens (which expire after ``ttl``
seconds), each retry withdraws one, and ``min_per_second`` retries are always allowed so that a
quiet client can still retry. When a backend fails every request, retries add at most ``ratio`` to
the load rather than multiplying it by the attempt count.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass


@dataclass(slots=True)
class Backoff:
    base: float = 0.1
    cap: float = 10.0
    rng: random.Random | None = None
    attempt: int = 0

    def next_delay(self) -> float:
        """The delay before the next attempt; each call doubles the ceiling until ``cap``."""
        ceiling = min(self.cap, self.base * (2 ** min(self.attempt, 32)))
        self.attempt += 1
        return (self.rng or random).uniform(0, ceiling)

    def reset(self) -> None:
        self.attempt = 0


class RetryBudget:
    """Retries allowed as a share of recent requests.

    Args:
        ratio: retries per request allowed over ``ttl`` (0.2: one retry per five requests).
        min_per_second: retries always allowed per second, whatever the traffic.
        ttl: seconds a request's deposit counts.
    """

    def __init__(self, ratio: float = 0.2, min_per_second: float = 10.0, ttl: float = 10.0) -> None:
        self.ratio = ratio
        self.min_per_second = min_per_second
        self.ttl = ttl
        self._requests: deque[float] = deque()
        self._retries: deque[float] = deque()

    def _expire(self, now: float) -> None:
        for q in (self._requests, self._retries):
            while q and now - q[0] >= self.ttl:
                q.popleft()

    def record_request(self, now: float) -> None:
        """A first attempt was sent."""
        self._expire(now)
        self._requests.append(now)

    def can_retry(self, now: float) -> bool:
        self._expire(now)
        allowed = self.min_per_second * self.ttl + self.ratio * len(self._requests)
        return len(self._retries) + 1 <= allowed

    def try_withdraw(self, now: float) -> bool:
        """Take one retry from the budget if there is one; False means do not retry."""
        if not self.can_retry(now):
            return False
        self._retries.append(now)
        return True
