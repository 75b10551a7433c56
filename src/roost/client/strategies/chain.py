"""A fallback chain: the first strategy that answers is followed; the others stand in while it fails.

``ChainStrategy([consul, dns, static])`` follows ``consul``. When it fails, the next strategy is
followed for up to ``retry_primary`` seconds, and then the chain starts again from the first one, so
it returns to the registry once the registry is back. When every strategy fails the chain raises and
the discovery cache serves what it had, with backoff, as for any strategy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence

from roost.client.instance import Instance
from roost.client.strategies.base import Strategy
from roost.errors import Unavailable

log = logging.getLogger("roost.client")


class ChainStrategy:
    """Try strategies in order.

    Args:
        strategies: the primary first.
        retry_primary: seconds a fallback is followed before the chain tries the primary again.
        fallback_on_empty: treat an empty answer like a failure (move on to the next strategy).
    """

    name = "chain"

    def __init__(
        self, strategies: Sequence[Strategy], *, retry_primary: float = 30.0, fallback_on_empty: bool = False
    ) -> None:
        if not strategies:
            raise ValueError("a chain needs at least one strategy")
        self.strategies = list(strategies)
        self.retry_primary = retry_primary
        self.fallback_on_empty = fallback_on_empty
        self.name = "chain(" + ",".join(s.name for s in self.strategies) + ")"

    async def updates(self, service: str) -> AsyncIterator[tuple[Instance, ...]]:
        loop = asyncio.get_running_loop()
        while True:
            errors: list[str] = []
            for position, strategy in enumerate(self.strategies):
                last = position == len(self.strategies) - 1
                ends = None if position == 0 else loop.time() + self.retry_primary
                updates = aiter(strategy.updates(service))
                try:
                    while True:
                        step = anext(updates)
                        if ends is None:
                            snapshot = await step
                        else:
                            snapshot = await asyncio.wait_for(step, max(ends - loop.time(), 0.0))
                        if self.fallback_on_empty and not snapshot and not last:
                            errors.append(f"{strategy.name}: no instances")
                            break
                        yield snapshot
                except TimeoutError:
                    break  # this fallback's time is up: start again from the primary
                except StopAsyncIteration:
                    errors.append(f"{strategy.name}: stopped")
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    errors.append(f"{strategy.name}: {exc}")
                    log.info("discovery strategy %s failed for %r: %s", strategy.name, service, exc)
                finally:
                    with contextlib.suppress(Exception):
                        await updates.aclose()  # type: ignore[attr-defined]
            else:
                raise Unavailable(f"every discovery strategy failed for {service!r}: " + "; ".join(errors))

    async def aclose(self) -> None:
        for strategy in self.strategies:
            await strategy.aclose()
