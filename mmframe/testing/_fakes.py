"""The fakes: a strategy context made of settable attributes, and a feed the test drives by hand."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import ClassVar

import attrs
import trio

from .._engine.tracker import best_first as _best_first
from .._models import DepthSnapshot, Fill, Market, MarketData, Order, PriceTick, Quote, Side, Trade, to_decimal
from ..protocols import Position, Subscription

__all__ = ["FakeContext", "ScriptedFeed", "make_market"]


def make_market(
    symbol: str = "BTC/USDT",
    *,
    tick_size: Decimal | str = "0.01",
    price_precision: int = 2,
    quantity_precision: int = 4,
    min_quantity: Decimal | str = "0.0001",
) -> Market:
    """A :class:`~mmframe._models.Market` with test-friendly defaults (``BTC/USDT``, tick 0.01, quantities to 4 dp)."""
    return Market(
        symbol=symbol,
        tick_size=to_decimal(tick_size, name="tick_size"),
        price_precision=price_precision,
        quantity_precision=quantity_precision,
        min_quantity=to_decimal(min_quantity, name="min_quantity"),
    )


def _optional_decimal(value: object) -> Decimal | None:
    return None if value is None else to_decimal(value, name="index_price")


@attrs.define
class FakeContext:
    """A :class:`~mmframe.protocols.StrategyContext` made of settable attributes, recording what it is asked to do.

    :ivar market: the market the strategy quotes (default: :func:`make_market`).
    :ivar now: the clock the strategy sees.
    :ivar index_price: the last index price, or ``None`` (a string or number is converted to a Decimal).
    :ivar last_tick: the last tick, or ``None``.
    :ivar depth: the last external depth snapshot, or ``None``.
    :ivar position: the market's position.
    :ivar orders: our orders; :meth:`live_orders` shows the live ones not being cancelled, best price first.
    :ivar submitted: every quote passed to :meth:`submit`, in order.
    :ivar cancelled: every client order id passed to :meth:`cancel`, in order.
    :ivar fill_history: the fills from before the run (``StrategyContext.fill_history``), oldest first.
    :ivar prefix: the prefix of the client order ids :meth:`submit` returns (``"<prefix>-1"``, ``"<prefix>-2"``, ...).
    """

    market: Market = attrs.field(factory=make_market)
    now: float = 0.0
    index_price: Decimal | None = attrs.field(default=None, converter=_optional_decimal)
    last_tick: PriceTick | None = None
    depth: DepthSnapshot | None = None
    position: Position = attrs.field(factory=Position)
    orders: list[Order] = attrs.field(factory=list)
    submitted: list[Quote] = attrs.field(factory=list)
    cancelled: list[str] = attrs.field(factory=list)
    prefix: str = "fake"
    fill_history: list[Fill] = attrs.field(factory=list)
    _submit_count: int = attrs.field(default=0, init=False)

    def set_index_price(self, price: Decimal | str | int, *, exchange: str = "fake") -> PriceTick:
        """Set :attr:`index_price` and :attr:`last_tick` as a tick of *price* would; returns the tick."""
        tick = PriceTick(exchange=exchange, symbol=self.market.symbol, price=to_decimal(price, name="price"))
        self.index_price = tick.price
        self.last_tick = tick
        return tick

    def live_orders(self, side: Side | None = None, *, include_cancelling: bool = False) -> Sequence[Order]:
        live = [
            order
            for order in self.orders
            if order.status.is_live
            and (include_cancelling or not order.cancel_requested)
            and (side is None or order.side is side)
        ]
        return sorted(live, key=_best_first)

    def submit(self, quote: Quote) -> str:
        """Record *quote* in :attr:`submitted` and return a new client order id."""
        self._submit_count += 1
        self.submitted.append(quote)
        return f"{self.prefix}-{self._submit_count}"

    def cancel(self, client_order_id: str) -> None:
        """Record *client_order_id* in :attr:`cancelled`."""
        self.cancelled.append(client_order_id)


class ScriptedFeed:
    """An :class:`~mmframe.protocols.ExchangeFeed` that delivers exactly what the test pushes, when it pushes it.

    :meth:`push` calls the listeners of the item's symbol synchronously, in subscription order; an exception from
    a listener propagates to the test (a real feed would log it and drop the listener).
    """

    name: ClassVar[str] = "scripted"

    @attrs.frozen
    class Config:
        """No options."""

    def __init__(self, config: Config | None = None) -> None:
        self.config = config if config is not None else ScriptedFeed.Config()
        self._listeners: dict[str, dict[int, Callable[[MarketData], None]]] = {}
        self._next_token = 0
        self.pushed: list[MarketData] = []
        self.started = False

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Report ready at once, then wait to be cancelled (pushing needs no running task)."""
        self.started = True
        task_status.started()
        await trio.sleep_forever()

    def subscribe(self, symbol: str, listener: Callable[[MarketData], None]) -> Subscription:
        token = self._next_token
        self._next_token += 1
        self._listeners.setdefault(symbol, {})[token] = listener

        def remove() -> None:
            listeners = self._listeners.get(symbol, {})
            listeners.pop(token, None)
            if not listeners:
                self._listeners.pop(symbol, None)

        return Subscription(remove)

    def listener_count(self, symbol: str) -> int:
        """How many listeners *symbol* has now."""
        return len(self._listeners.get(symbol, {}))

    def push(self, item: MarketData) -> int:
        """Deliver *item* to every listener of ``item.symbol`` now; returns how many listeners got it."""
        self.pushed.append(item)
        listeners = list(self._listeners.get(item.symbol, {}).values())
        for listener in listeners:
            listener(item)
        return len(listeners)

    def push_price(
        self, symbol: str, price: Decimal | str | int, *, exchange: str = "scripted", timestamp: float | None = None
    ) -> PriceTick:
        """Build a :class:`~mmframe._models.PriceTick` of *price* for *symbol*, :meth:`push` it and return it."""
        tick = PriceTick(
            exchange=exchange,
            symbol=symbol,
            price=to_decimal(price, name="price"),
            timestamp=time.time() if timestamp is None else timestamp,
        )
        self.push(tick)
        return tick

    def push_trade(
        self,
        symbol: str,
        side: Side | str,
        quantity: Decimal | str | int,
        price: Decimal | str | int,
        *,
        exchange: str = "scripted",
        timestamp: float | None = None,
    ) -> Trade:
        """Build a public :class:`~mmframe.Trade` (*side* is the aggressor's), :meth:`push` it and return it."""
        trade = Trade(
            exchange=exchange,
            symbol=symbol,
            price=to_decimal(price, name="price"),
            quantity=to_decimal(quantity, name="quantity"),
            side=Side(side),
            timestamp=time.time() if timestamp is None else timestamp,
        )
        self.push(trade)
        return trade
