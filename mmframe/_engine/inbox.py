"""A market's inbox: where its inputs wait for the market's task."""

from __future__ import annotations

import time
from collections import deque

import trio

from .._models import DepthSnapshot, MarketData, OrderEvent, PriceTick, Trade

__all__ = ["Inbox"]

#: Public trades kept for a market's next step; beyond, the oldest are kept and the rest counted as dropped (a market
#: stuck for minutes on a busy tape must not hold every trade in memory).
MAX_WAITING_TRADES = 100_000


class Inbox:
    """Where a market's inputs wait: every order event in order, the latest tick and depth (conflated), and the
    public trades since the last step (in order; a trade alone does not wake the market: the strategy sees them at
    its next step).

    The feed's and the sink's listeners push (synchronously, never blocking); the market's task waits on
    :meth:`wait` and takes what is there."""

    __slots__ = (
        "_wake", "conflated", "depth", "events", "extra_ticks", "tick", "tick_at", "trades", "trades_dropped",
        "wake_on_depth",
    )

    def __init__(self) -> None:
        self.events: deque[OrderEvent] = deque()
        self.tick: PriceTick | None = None
        self.extra_ticks: dict[int, PriceTick] = {}  # the latest tick of each extra index source (a composite)
        self.tick_at = 0.0  # perf_counter() when the latest tick arrived: where quote latency starts
        self.depth: DepthSnapshot | None = None
        self.conflated = 0
        self.trades: list[Trade] = []
        self.wake_on_depth = True  # the strategy's Strategy.wake_on_depth
        self.trades_dropped = 0  # trades beyond MAX_WAITING_TRADES while the market was busy
        self._wake = trio.Event()

    def push_event(self, event: OrderEvent) -> None:
        self.events.append(event)
        self._wake.set()

    def push_data(self, item: MarketData) -> None:
        if isinstance(item, PriceTick):
            if self.tick is not None:
                self.conflated += 1
            else:
                self.tick_at = time.perf_counter()
            self.tick = item
        elif isinstance(item, DepthSnapshot):
            self.depth = item
            if not self.wake_on_depth:
                return
        elif isinstance(item, Trade):
            if len(self.trades) < MAX_WAITING_TRADES:
                self.trades.append(item)
            else:
                self.trades_dropped += 1
            return
        else:
            return
        self._wake.set()

    def push_source(self, source: int, item: MarketData) -> None:
        """A tick of extra index source number *source* (1, 2, ...); its depth is not the market's."""
        if not isinstance(item, PriceTick):
            return
        if self.tick is None and not self.extra_ticks:
            self.tick_at = time.perf_counter()
        if source in self.extra_ticks:
            self.conflated += 1
        self.extra_ticks[source] = item
        self._wake.set()

    @property
    def idle(self) -> bool:
        """Nothing waits: no event, no tick (of any source), no depth."""
        return not self.events and self.tick is None and self.depth is None and not self.extra_ticks

    async def wait(self) -> None:
        await self._wake.wait()

    def clear_wake(self) -> None:
        if self._wake.is_set():
            self._wake = trio.Event()
