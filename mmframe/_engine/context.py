"""The :class:`mmframe.StrategyContext` a market shows its strategy."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING

import trio

from .._models import DepthSnapshot, Fill, Market, Order, PriceTick, Quote, Side
from ..protocols import Position
from .tracker import best_first

if TYPE_CHECKING:
    from .market import MarketRunner

__all__ = ["MarketContext"]


class MarketContext:
    """The :class:`mmframe.StrategyContext` of one market: its figures read from the runner; what the strategy
    submits or cancels is kept here for the market's next send."""

    def __init__(self, runner: MarketRunner) -> None:
        self._runner = runner
        self.submitted: list[tuple[str, Quote]] = []
        self.cancel_requests: list[str] = []

    @property
    def market(self) -> Market:
        return self._runner.market

    @property
    def now(self) -> float:
        return trio.current_time()

    @property
    def index_price(self) -> Decimal | None:
        r = self._runner
        return None if r.stale or r.doubt or r.last_tick is None else r.last_tick.price

    @property
    def last_tick(self) -> PriceTick | None:
        return self._runner.last_tick

    @property
    def depth(self) -> DepthSnapshot | None:
        return self._runner.last_depth

    @property
    def position(self) -> Position:
        return self._runner.position

    def live_orders(self, side: Side | None = None, *, include_cancelling: bool = False) -> Sequence[Order]:
        if not include_cancelling:
            return self._runner.tracker.quoting(side)
        orders = [o for o in self._runner.tracker.live() if side is None or o.side is side]
        orders.sort(key=best_first)
        return orders

    @property
    def fill_history(self) -> Sequence[Fill]:
        return self._runner.history

    def submit(self, quote: Quote) -> str:
        client_order_id = self._runner.next_client_order_id()
        self.submitted.append((client_order_id, quote))
        return client_order_id

    def cancel(self, client_order_id: str) -> None:
        self.cancel_requests.append(client_order_id)
