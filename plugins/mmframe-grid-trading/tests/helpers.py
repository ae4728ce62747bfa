"""What the tests share: an engine on the paper sink with the real plugin module and a scripted feed (mmframe.testing's
harness), a price path that trades against our orders on the paper book, and the invariant checks (one resting order
per slot at most, after every event on the book and every order event the engine applies).

How a price path trades (:meth:`Rig.move`): when the price goes to *p*, another participant first takes every order
of ours that *p* crossed (our bids at or above *p*, our asks at or below it) with an IOC order at *p*; the engine
processes the fills while its index is still the old price; then the index tick *p* arrives; then anything of ours
that crosses *p* is taken again, until nothing does. A trade executes at our (the resting) order's price.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from typing import Any

import attrs
import mmframe_grid_trading
import trio
import trio.testing
from mmframe_grid_trading import GridTrading

from mmframe import (
    Fill,
    Market,
    MarketKey,
    MarketSpec,
    MarketStatus,
    OrderEvent,
    OrderType,
    Position,
    RiskLimits,
    Side,
    hookimpl,
)
from mmframe.book import OrderState
from mmframe.protocols import Subscription
from mmframe.testing import Harness, PaperSink, start_engine

#: ``await history(spec, client_prefix)``: the fills earlier runs recorded (the engine's history loader).
HistoryLoader = Callable[[MarketSpec, str], Awaitable[Sequence[Fill]]]

D = Decimal
BTC = Market("BTC/USDT", tick_size="0.01", price_precision=2, quantity_precision=4, min_quantity="0.0001")
KEY = MarketKey("BTC/USDT")
ANCHOR = D("100")
SPACING = D("1")
QUANTITY = D("0.5")
INSTANCE = "t"
PREFIX = "t-BTCUSDT1-"
REFRESH = 1.0  # the market's refresh interval: it decides again at least this often


def grid_config(**changes: Any) -> dict[str, Any]:
    """The grid the engine tests run: anchor 100, spacing 1, 0.5 per order, windows of 3 slots. A change to
    ``None`` removes the key."""
    config: dict[str, Any] = {
        "price_interval": "1",
        "order_quantity": "0.5",
        "buy_window_size": 3,
        "sell_window_size": 3,
        "anchor_price": "100",
    }
    config.update(changes)
    return {k: v for k, v in config.items() if v is not None}


# ---------------------------------------------------------------------------------------------------------------
# The engine's sink: the paper sink with the tests' extras
# ---------------------------------------------------------------------------------------------------------------


class RigSink(PaperSink):
    """The paper sink with, through its public methods only:

    - ``fee_rate``: a fee of ``rate * price * quantity`` on each of our fills (the paper book charges none);
    - ``delay``: our order events are held back and delivered by :meth:`release`, shuffled across orders (each
      order's own events stay in their order, as a sink keeps them); our cancels are held back too and reach the
      book at a random later release, so an order whose cancel is under way can still be traded;
    - ``on_event``: called at every event of ours, right when the book produced it (a check of the book);
    - ``crashed``: ``cancel_all`` and ``open_orders`` do nothing, as when a process dies without cleaning up.
    """

    def __init__(self, *, fee_rate: str = "0", delay: bool = False, seed: int = 0) -> None:
        super().__init__()
        self.fee_rate = D(fee_rate)
        self.delay = delay
        self.rng = random.Random(seed)
        self.held: list[tuple[Callable[[OrderEvent], None], OrderEvent]] = []
        self.cancels: list[tuple[str, str]] = []  # (symbol, client order id) sent, not yet on the book
        self.on_event: Callable[[str], None] | None = None
        self.crashed = False
        self.released = 0
        self.reordered = 0

    def subscribe(self, symbol: str, prefix: str, listener: Callable[[OrderEvent], None]) -> Subscription:
        def deliver(event: OrderEvent) -> None:
            if event.fill is not None and self.fee_rate:
                fill = event.fill
                event = attrs.evolve(event, fill=attrs.evolve(fill, fee=self.fee_rate * fill.price * fill.quantity))
            if self.on_event is not None:
                self.on_event(f"{event.kind} {event.client_order_id}")
            if self.delay:
                self.held.append((listener, event))
            else:
                listener(event)

        return super().subscribe(symbol, prefix, deliver)

    @property
    def in_flight(self) -> bool:
        return bool(self.held or self.cancels)

    async def cancel(self, symbol: str, client_order_ids: Sequence[str]) -> None:
        if not self.delay:
            return await super().cancel(symbol, client_order_ids)
        await trio.lowlevel.checkpoint()
        self.cancels.extend((symbol, coid) for coid in client_order_ids)

    async def release(self, everything: bool = False, *, cancels: bool = True) -> int:
        """Apply a random part of the cancels in flight (none without *cancels*), then deliver held events: the
        first pending event of a random subset of orders (all of them with *everything*), in random order. Returns
        how many were delivered."""
        if self.cancels and cancels:
            count = len(self.cancels) if everything else self.rng.randint(0, len(self.cancels))
            applying, self.cancels = self.cancels[:count], self.cancels[count:]
            for symbol, coid in applying:
                await PaperSink.cancel(self, symbol, [coid])
        firsts: dict[str, int] = {}
        for i, (_, event) in enumerate(self.held):
            firsts.setdefault(event.client_order_id, i)
        chosen = list(firsts.values())
        self.rng.shuffle(chosen)
        if not everything and len(chosen) > 1:
            chosen = chosen[: self.rng.randint(1, len(chosen))]
        if chosen != sorted(chosen):
            self.reordered += 1
        batch = [self.held[i] for i in chosen]
        for i in sorted(chosen, reverse=True):
            del self.held[i]
        for listener, event in batch:
            listener(event)
        self.released += len(batch)
        return len(batch)

    async def cancel_all(self, symbol: str, prefix: str = "") -> int:
        if self.crashed:
            await trio.lowlevel.checkpoint()
            return 0
        return await super().cancel_all(symbol, prefix)

    async def open_orders(self, symbol: str, prefix: str = "") -> list[Any]:
        if self.crashed:
            await trio.lowlevel.checkpoint()
            return []
        return await super().open_orders(symbol, prefix)


class Observer:
    """A plugin that checks the book at every order event the engine applies, and keeps every fill of ours."""

    def __init__(self, check: Callable[[str], None]) -> None:
        self.check = check
        self.fills: list[Fill] = []
        self.events = 0

    @hookimpl
    def order_event(self, market: Market, event: OrderEvent, order: Any) -> None:
        self.events += 1
        self.check(f"order event {event.kind} of {event.client_order_id}")

    @hookimpl
    def order_filled(self, market: Market, fill: Fill, position: Position) -> None:
        self.fills.append(fill)


def spec(config: dict[str, Any] | None = None, **kwargs: Any) -> MarketSpec:
    values: dict[str, Any] = {
        "market": BTC,
        "strategy": "grid_trading",
        "strategy_config": grid_config() if config is None else config,
        "feed": "scripted",
        "index_symbol": "BTCUSDT",
        "risk": RiskLimits(),
        "refresh_interval": REFRESH,
        "stale_after": 1e9,  # the path decides when prices come, however long the mock clock runs
        "seed": 7,
    }
    values.update(kwargs)
    return MarketSpec(**values)


# ---------------------------------------------------------------------------------------------------------------
# The rig
# ---------------------------------------------------------------------------------------------------------------


@attrs.define
class Rig:
    """One engine on a :class:`RigSink`, the checks, and the price path's moves."""

    sink: RigSink
    anchor: Decimal
    spacing: Decimal
    engine: Harness | None = None
    observer: Observer | None = None
    violations: list[str] = attrs.field(factory=list)
    checks: int = 0
    price: Decimal | None = None

    # ---- the book and the invariant ----------------------------------------------------------------------------

    def ours(self) -> list[OrderState]:
        """Our orders resting on the paper book."""
        return [o for o in self.sink.book("BTC/USDT").open_orders() if o.owner == self.sink.config.owner]

    def slot_of(self, side: Side, price: Decimal) -> int | str:
        """The slot an order of ours belongs to, computed here from the grid: a buy at its slot's price, a sell
        one spacing above it."""
        steps = (price - self.anchor) / self.spacing
        if steps != steps.to_integral_value():
            return f"off the grid at {price}"
        return int(steps) - (1 if side is Side.SELL else 0)

    def check(self, where: str) -> None:
        """Never more than one resting order of ours per slot (nor any order off the grid)."""
        self.checks += 1
        counts = Counter(self.slot_of(o.side, o.price) for o in self.ours() if o.price is not None)
        for slot, n in counts.items():
            if n > 1 or isinstance(slot, str):
                self.violations.append(f"{where}: slot {slot} has {n} resting orders")

    def resting(self) -> tuple[list[Decimal], list[Decimal]]:
        """``(bid prices high to low, ask prices low to high)`` of our resting orders."""
        orders = self.ours()
        bids = sorted((o.price for o in orders if o.side is Side.BUY and o.price is not None), reverse=True)
        asks = sorted(o.price for o in orders if o.side is Side.SELL and o.price is not None)
        return bids, asks

    # ---- the engine --------------------------------------------------------------------------------------------

    async def start(self, nursery: trio.Nursery, history: HistoryLoader | None = None) -> Harness:
        """Start a (new) engine on the sink, with the observer registered (and mmframe.testing's scripted feed)."""
        self.observer = self.observer or Observer(self.check)
        self.engine = await start_engine(nursery, mmframe_grid_trading, self.observer, sink=self.sink,
                                         instance_id=INSTANCE, history=history)
        return self.engine

    def strategy(self) -> GridTrading:
        assert self.engine is not None
        strategy = self.engine.strategy(KEY)
        assert isinstance(strategy, GridTrading)
        return strategy

    def status(self) -> MarketStatus:
        assert self.engine is not None
        return self.engine.status(KEY)

    def recorded_fills(self) -> Sequence[Fill]:
        assert self.observer is not None
        return self.observer.fills

    async def history(self, spec: MarketSpec, client_prefix: str) -> list[Fill]:
        """A history loader: the fills the observer saw so far (as the store's fill audit would return them)."""
        return [f for f in self.recorded_fills() if f.client_order_id.startswith(client_prefix)]

    # ---- the path ----------------------------------------------------------------------------------------------

    async def settle(self) -> None:
        """Let the engine process everything. With a delaying sink: a random part of what is in flight at a time,
        each followed by a refresh interval (on the mock clock) in which the engine decides again on what it has
        been told so far, until nothing is left in flight."""
        await trio.testing.wait_all_tasks_blocked()
        while self.sink.in_flight:
            await self.sink.release()
            await trio.sleep(REFRESH)
            await trio.testing.wait_all_tasks_blocked()

    async def tick(self, price: str | Decimal) -> None:
        self.price = D(price)
        assert self.engine is not None
        self.engine.push_tick(price, market=KEY)
        await self.settle()

    async def trade_at(self, price: Decimal, *, partial: bool = False) -> None:
        """Another participant takes every order of ours *price* crossed, until none is left crossing. With
        *partial*, the first sweep of each side leaves half of its last order (the one furthest from the book's
        best) unfilled."""
        first = {Side.BUY: partial, Side.SELL: partial}
        while True:
            ours = self.ours()
            bids = sorted((o for o in ours if o.side is Side.BUY and o.price >= price), key=lambda o: -o.price)
            asks = sorted((o for o in ours if o.side is Side.SELL and o.price <= price), key=lambda o: o.price)
            if not bids and not asks:
                return
            for side, crossed in ((Side.BUY, bids), (Side.SELL, asks)):
                if not crossed:
                    continue
                quantity = sum((o.remaining_quantity for o in crossed), D(0))
                if first[side]:
                    quantity -= BTC.round_quantity(crossed[-1].remaining_quantity / 2)
                first[side] = False
                self.sink.submit_external("BTC/USDT", side=side.opposite, type=OrderType.IOC, quantity=quantity,
                                          price=price)
                self.check(f"after a taker at {price}")
            await self.settle()

    async def move(self, price: str, *, partial: bool = False) -> None:
        """The market goes to *price*: what it crossed trades, then the index tick arrives, then what crosses it
        trades."""
        p = D(price)
        await self.trade_at(p, partial=partial)
        await self.tick(p)
        await self.trade_at(p, partial=partial)

    async def run_path(self, path: Sequence[str], *, partial: bool = False) -> None:
        await self.tick(path[0])
        for price in path[1:]:
            await self.move(price, partial=partial)


async def start_rig(
    nursery: trio.Nursery,
    sink: RigSink | None = None,
    *,
    anchor: Decimal = ANCHOR,
    history: HistoryLoader | None = None,
    **spec_kwargs: Any,
) -> Rig:
    rig = Rig(sink or RigSink(), anchor, SPACING)
    rig.sink.on_event = rig.check
    await rig.start(nursery, history)
    assert rig.engine is not None
    await rig.engine.start(spec(**spec_kwargs))
    return rig


def bought_less_sold(fills: Sequence[Fill]) -> Decimal:
    """Filled buys less filled sells, from the fills themselves."""
    return sum((f.quantity if f.side is Side.BUY else -f.quantity for f in fills), D(0))


# The seed-000 form of the grid's config, with the market's description (as the seed's own row carries it).
GRID_CONFIG = {"grid_levels": 5, "grid_spacing_percent": 0.005, "grid_quantity": 0.5, "tick_size": 0.01,
               "quote_precision": 2, "base_precision": 4}
GRID_SQL = f"""
INSERT INTO strategy_strategy (strategy_name, config, `desc`) VALUES (
'grid_trading',
'{json.dumps(GRID_CONFIG)}',
'网格交易策略'
);
INSERT INTO strategy_currency (currency_id, index_symbol, index_source, market_status, market_type, default_strategy)
VALUES (881, 'SOLUSDT', 1, 1, 1, 2);
"""
