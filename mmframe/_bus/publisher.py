"""Publishing to the market-data bus: :class:`BusPublisher`, and :func:`publish_feed` behind
``mmframe feed publish``.

The publisher keeps, per channel, only the newest payload not yet sent (a price superseded before it left is
stale anyway: it is counted as ``conflated``), and sends what is pending in one pipeline per round trip from a
worker thread. When Redis is away the newest payload per channel waits, the publisher reconnects with backoff,
and the first round after it is back sends the current prices; the feed connection is never interrupted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import attrs
import redis
import trio

from .._models import MarketData, Trade
from .._settings import RedisSettings
from ..feedtools import Backoff
from ..protocols import ExchangeFeed, ReportsSymbolStatistics
from .link import BRIDGE_ERRORS, make_client
from .wire import encode

__all__ = ["BusPublisher", "PublisherStatistics", "publish_feed"]

log = logging.getLogger("mmframe.bus.publisher")


@attrs.frozen
class PublisherStatistics:
    published: int
    conflated: int
    pending: int
    failures: int
    reconnects: int
    connected: bool


class BusPublisher:
    """Publishes market data to one Redis, in the bus's format.

    ``publisher.publish(exchange, item)`` is synchronous and never blocks (call it from a feed's listener);
    :meth:`run` does the sending.
    """

    def __init__(
        self, address: RedisSettings, *, timeout: float = 2.0, backoff: Backoff | None = None
    ) -> None:
        self.address = address
        self.timeout = timeout
        self.backoff = backoff if backoff is not None else Backoff(initial=0.25, maximum=5.0)
        self._pending: dict[str, str] = {}
        self._wake = trio.Event()
        self._limiter = trio.CapacityLimiter(1)
        self.published = 0
        self.conflated = 0
        self.failures = 0
        self.reconnects = 0
        self.connected = False

    def publish(self, exchange: str, item: MarketData) -> None:
        if isinstance(item, Trade):
            return  # the bus carries the seed's price and depth channels; trades have none
        channel, payload = encode(exchange, item)
        if channel in self._pending:
            self.conflated += 1
        self._pending[channel] = payload
        self._wake.set()

    def statistics(self) -> PublisherStatistics:
        return PublisherStatistics(
            published=self.published, conflated=self.conflated, pending=len(self._pending),
            failures=self.failures, reconnects=self.reconnects, connected=self.connected,
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Send what is published until cancelled (ready at once; connects on the first send)."""
        task_status.started()
        client: redis.Redis | None = None
        try:
            while True:
                if not self._pending:
                    self._wake = trio.Event()
                    await self._wake.wait()
                batch, self._pending = self._pending, {}
                try:
                    if client is None:
                        client = make_client(self.address, timeout=self.timeout)
                    await trio.to_thread.run_sync(_send, client, batch, abandon_on_cancel=True, limiter=self._limiter)
                except BRIDGE_ERRORS as exc:
                    for channel, payload in batch.items():
                        self._pending.setdefault(channel, payload)  # what arrived meanwhile is newer: it wins
                    self.failures += 1
                    if self.connected:
                        self.reconnects += 1
                        self.connected = False
                    delay = self.backoff.next()
                    (log.warning if self.backoff.attempts == 1 else log.debug)(
                        "market Redis %s: %s; retrying in %.2fs", self.address.describe(),
                        exc or type(exc).__name__, delay,
                    )
                    if client is not None:
                        client.close()
                        client = None
                    await trio.sleep(delay)
                    continue
                self.published += len(batch)
                if not self.connected:
                    log.info("market Redis %s: publishing", self.address.describe())
                    self.connected = True
                self.backoff.reset()
        finally:
            if client is not None:
                client.close()


def _send(client: redis.Redis, batch: dict[str, str]) -> None:
    pipe = client.pipeline(transaction=False)
    for channel, payload in batch.items():
        pipe.publish(channel, payload)
    pipe.execute()


async def publish_feed(
    feed: ExchangeFeed,
    exchange: str,
    symbols: Sequence[str],
    publisher: BusPublisher,
    *,
    report_every: float = 10.0,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run *feed* for *symbols* and publish every update to the bus under *exchange*, until cancelled.

    Every *report_every* seconds a line with the feed's and the publisher's figures is logged.
    """
    async with trio.open_nursery() as nursery:
        await nursery.start(publisher.run)
        await nursery.start(feed.run)
        subscriptions = [feed.subscribe(symbol, lambda item: publisher.publish(exchange, item)) for symbol in symbols]
        task_status.started()
        try:
            while True:
                await trio.sleep(report_every)
                _report(feed, symbols, publisher)
        finally:
            for subscription in subscriptions:
                subscription.close()


def _report(feed: ExchangeFeed, symbols: Sequence[str], publisher: BusPublisher) -> None:
    stats = publisher.statistics()
    parts = []
    for symbol in symbols:
        if not isinstance(feed, ReportsSymbolStatistics):
            parts.append(symbol)
            continue
        s = feed.symbol_statistics(symbol)
        age = "-" if s.last_update_age is None else f"{s.last_update_age:.1f}s"
        parts.append(f"{symbol} {s.last_price or '-'} (age {age}, {s.messages} msgs, {s.rejected} rejected)")
    log.info(
        "%s | published %d, conflated %d, redis %s, %d reconnects | %s",
        time.strftime("%H:%M:%S"), stats.published, stats.conflated,
        "up" if stats.connected else "DOWN", stats.reconnects, "; ".join(parts),
    )
