"""The ``external_index_follow`` strategy: a ladder of bids and asks that follows an external index price.

What it does on each evaluation (the engine calls :meth:`ExternalIndexFollow.desired_orders` after every tick,
order event and refresh interval):

1. **Reference.** ``reference = index * price_follow_percent / 100``. Without an index price it asks for an empty
   book.
2. **Anchor.** The ladder is built on an *anchor* reference and kept as it is until the reference moves at least
   ``price_change_amount`` away from the anchor, or ``maintenance_interval`` has passed since the anchor was set.
   In between, :meth:`desired_orders` returns the very same ladder, so the engine's reconciler sends nothing.
3. **Ladder.** Level *i* (nearest first): a bid at ``anchor * (1 - spread_i)`` rounded *down* to the tick grid and
   an ask at ``anchor * (1 + spread_i)`` rounded *up*, each for ``base_quantity * quantity_ratio_i`` rounded down
   to the market's precision and capped at ``max_order_quantity``. Levels whose quantity rounds below the
   market's minimum, or whose price lands on a price already quoted, are dropped; no bid is at or above an ask;
   ``max_active_orders`` keeps the nearest ``max_active_orders // 2`` levels per side. Every quote carries the
   seed's 20 % size variation (``Quote.size_variation``): the engine takes up to 20 % off a newly placed order,
   and the reconciler keeps a resting order within it.
4. **Upkeep.** Every ``order_refresh_interval_sec`` the oldest ``order_refresh_percent`` of our resting orders
   are cancelled (the reconciler places them again on the next step, with a fresh size); an order older than
   ``order_timeout_sec`` is cancelled the same way.
5. **Sweeps** (``opponent_detection_enabled``). Every ``refresh_interval_ms`` the engine hands the strategy a
   snapshot of the local book. Our own resting quantity is subtracted level by level; what is left belongs to
   other participants. An ask below the reference (or a bid above it) no further than
   ``max_sweep_price_deviation`` from it is taken with one IOC order for at most ``max_sweep_quantity`` (and at most
   ``max_order_quantity``), at most once per ``sweep_cooldown_ms``. A sweep never reaches our own orders: its limit
   stays strictly inside our own best opposite quote (and the engine's self-trade prevention refuses a crossing order
   anyway).

``mode = "replace_all"`` runs the seed's original loop instead of step 2: every ``maintenance_interval`` it
cancels every order and places the whole ladder again at the current reference. It exists to measure what the
reconciling mode saves (see the README's "Message efficiency").

A stale index and bad ticks are the engine's business (``MarketSpec.stale_after``, ``max_tick_jump``): while the
index is stale the engine pulls every quote and does not ask the strategy.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, ClassVar

from mmframe import (
    DepthSnapshot,
    Market,
    Order,
    OrderEvent,
    OrderType,
    Quote,
    Side,
    Strategy,
    StrategyContext,
)

from .config import Config, Level

__all__ = ["SIZE_VARIATION", "SWEEP_TAG", "ExternalIndexFollow", "build_ladder"]

log = logging.getLogger("mmframe.strategy.external_index_follow")

#: The seed's random size variation: up to 20 % is taken off each newly placed order's quantity.
SIZE_VARIATION = Decimal("0.2")
#: The tag of the IOC orders that sweep other participants' mispriced orders.
SWEEP_TAG = "sweep"
_RESTING = frozenset({OrderType.LIMIT, OrderType.POST_ONLY})


def build_ladder(
    config: Config, market: Market, reference: Decimal, levels: Sequence[Level] | None = None
) -> list[Quote]:
    """The ladder for *reference*: bids best first, then asks best first (see the module documentation)."""
    levels = config.levels if levels is None else levels
    cap = market.round_quantity(config.max_order_quantity) if config.max_order_quantity is not None else None
    bids: list[Quote] = []
    asks: list[Quote] = []
    bid_prices: set[Decimal] = set()
    ask_prices: set[Decimal] = set()
    for n, level in enumerate(levels, start=1):
        quantity = market.round_quantity(config.base_quantity * level.quantity_ratio)
        if cap is not None:
            quantity = min(quantity, cap)
        if quantity <= 0 or quantity < market.min_quantity:
            continue
        bid = market.round_price(reference * (1 - level.spread_percent), Side.BUY)
        ask = market.round_price(reference * (1 + level.spread_percent), Side.SELL)
        if bid > 0 and bid not in bid_prices:
            bid_prices.add(bid)
            bids.append(Quote(Side.BUY, bid, quantity, tag=f"L{n}", size_variation=SIZE_VARIATION))
        if ask not in ask_prices:
            ask_prices.add(ask)
            asks.append(Quote(Side.SELL, ask, quantity, tag=f"L{n}", size_variation=SIZE_VARIATION))
    if bids and asks:  # outward rounding with spreads > 0 never crosses; a ladder is never crossed anyway
        best_ask = asks[0].price
        bids = [q for q in bids if q.price < best_ask]
    if config.max_active_orders is not None:
        per_side = config.max_active_orders // 2
        bids, asks = bids[:per_side], asks[:per_side]
    return bids + asks


class ExternalIndexFollow(Strategy):
    """Follow an external index with a ladder of bids and asks; see the module documentation."""

    name: ClassVar[str] = "external_index_follow"
    Config: ClassVar[type[Config]] = Config

    def __init__(self, config: Config, market: Market) -> None:
        super().__init__(config, market)
        self.config: Config = config
        self.levels = config.levels
        self.maintenance = config.maintenance_seconds
        #: Where the seed's flat config says the index comes from (``external_exchange``/``external_symbol``);
        #: ``None`` when the index source is ``strategy_currency.index_symbol``. The service decides the feed.
        self.external_exchange = config.external_exchange
        self.external_symbol = config.external_symbol
        self.local_depth_interval = config.depth_check_seconds if config.opponent_detection_enabled else None
        self.ignored_keys = config.ignored_keys
        if self.ignored_keys:
            log.warning(
                "[%s] ignoring %s: mmframe does not inject market orders or trade with itself",
                market.symbol,
                ", ".join(self.ignored_keys),
            )
        self._anchor: Decimal | None = None
        self._anchor_at: float | None = None
        self._ladder: list[Quote] = []
        self._replace_pending = False
        self._last_refresh: float | None = None
        self._last_sweep: float | None = None
        self.counters: dict[str, int] = dict.fromkeys(
            ("requotes", "replacements", "refreshes", "refreshed_orders", "timed_out_orders", "sweeps"), 0
        )
        self.swept_quantity = Decimal(0)  # what the sweeps asked for
        self.sweep_filled = Decimal(0)  # what they got

    # ---- the desired book -------------------------------------------------------------------------------------

    def reference(self, ctx: StrategyContext) -> Decimal | None:
        """``index * price_follow_percent / 100``, or ``None`` without an index price."""
        index = ctx.index_price
        percent = self.config.price_follow_percent
        if index is None or percent == 100:
            return index
        return index * percent / 100

    def desired_orders(self, ctx: StrategyContext) -> list[Quote]:
        reference = self.reference(ctx)
        if reference is None:
            self._anchor, self._anchor_at, self._ladder = None, None, []
            return []
        now = ctx.now
        self._upkeep(ctx, now)
        if self.config.mode == "replace_all":
            return self._replace_all(ctx.market, reference, now)
        if self._needs_requote(reference, now):
            self._requote(ctx.market, reference, now)
        return list(self._ladder)

    def _needs_requote(self, reference: Decimal, now: float) -> bool:
        if self._anchor is None or self._anchor_at is None:
            return True
        move = abs(reference - self._anchor)
        if move == 0:
            return False
        if move >= self.config.price_change_amount:
            return True
        return now - self._anchor_at >= self.maintenance

    def _requote(self, market: Market, reference: Decimal, now: float) -> None:
        self._anchor, self._anchor_at = reference, now
        self._ladder = build_ladder(self.config, market, reference, self.levels)
        self.counters["requotes"] += 1

    def _replace_all(self, market: Market, reference: Decimal, now: float) -> list[Quote]:
        """The seed's loop: every maintenance interval, cancel everything, then place the ladder afresh."""
        if self._anchor is None or self._anchor_at is None or self._replace_pending:
            self._replace_pending = False
            self._requote(market, reference, now)
        elif now - self._anchor_at >= self.maintenance:
            # This step the empty book makes the engine cancel every order; the next one places the new ladder.
            self._replace_pending = True
            self.counters["replacements"] += 1
            return []
        return list(self._ladder)

    # ---- upkeep: order refresh and order timeout --------------------------------------------------------------

    def _upkeep(self, ctx: StrategyContext, now: float) -> None:
        config = self.config
        if config.order_timeout_sec is None and config.order_refresh_interval_sec is None:
            return
        resting = [o for o in ctx.live_orders() if o.request.type in _RESTING]
        cancel: dict[str, None] = {}  # ordered, without duplicates
        if config.order_timeout_sec is not None:
            for order in resting:
                if now - order.created_at >= config.order_timeout_sec:
                    cancel[order.client_order_id] = None
            self.counters["timed_out_orders"] += len(cancel)
        interval = config.order_refresh_interval_sec
        if interval is not None and self._last_refresh is None:
            self._last_refresh = now  # the refresh clock starts with the first ladder asked for
        elif (
            interval is not None and config.order_refresh_percent > 0 and resting
            and now - self._last_refresh >= interval
        ):
            self._last_refresh = now
            count = max(1, int(len(resting) * config.order_refresh_percent))
            oldest = sorted(
                (o for o in resting if o.client_order_id not in cancel),
                key=lambda o: (o.created_at, o.client_order_id),
            )[:count]
            for order in oldest:
                cancel[order.client_order_id] = None
            self.counters["refreshes"] += 1
            self.counters["refreshed_orders"] += len(oldest)
        for client_order_id in cancel:
            ctx.cancel(client_order_id)  # the reconciler places the level again on the next step

    # ---- sweeping other participants' mispriced orders ---------------------------------------------------------

    def on_local_depth(self, depth: DepthSnapshot, ctx: StrategyContext) -> None:
        config = self.config
        if not config.opponent_detection_enabled or config.max_sweep_quantity is None:
            return
        reference = self.reference(ctx)
        if reference is None:
            return
        now = ctx.now
        if self._last_sweep is not None and (now - self._last_sweep) * 1000 < config.sweep_cooldown_ms:
            return
        live = ctx.live_orders()
        if config.max_active_orders is not None and len(live) >= config.max_active_orders:
            return
        ours: dict[tuple[Side, Decimal], Decimal] = {}
        for order in live:
            if order.price is not None:
                key = (order.side, order.price)
                ours[key] = ours.get(key, Decimal(0)) + order.remaining_quantity
        own_asks = [o.price for o in live if o.side is Side.SELL and o.price is not None]
        own_bids = [o.price for o in live if o.side is Side.BUY and o.price is not None]
        sweep = self._sweep(ctx.market, depth.asks, Side.SELL, reference, ours, min(own_asks, default=None))
        if sweep is None:
            sweep = self._sweep(ctx.market, depth.bids, Side.BUY, reference, ours, max(own_bids, default=None))
        if sweep is None:
            return
        ctx.submit(sweep)
        self._last_sweep = now
        self.counters["sweeps"] += 1
        self.swept_quantity += sweep.quantity
        log.info(
            "[%s] sweeping %s %s @ %s (reference %s)", ctx.market.symbol, sweep.side, sweep.quantity, sweep.price,
            reference,
        )

    def _sweep(
        self,
        market: Market,
        levels: Sequence[tuple[Decimal, Decimal]],
        resting: Side,
        reference: Decimal,
        ours: Mapping[tuple[Side, Decimal], Decimal],
        own_best: Decimal | None,
    ) -> Quote | None:
        """One IOC taking other participants' *resting*-side orders that are mispriced against *reference*.

        *levels* is that side of the local book, best first. Asks are mispriced below the reference, bids above
        it. The IOC's limit stays strictly inside *own_best* (our own best order on that side), so it can never
        meet one of ours. If the best mispriced level is further than ``max_sweep_price_deviation`` from the
        reference, the side is left alone: any IOC through the nearer levels would take that one first.
        """
        config = self.config
        assert config.max_sweep_quantity is not None
        try:
            wanted = market.round_quantity(config.max_sweep_quantity)
            if config.max_order_quantity is not None:  # a sweep is one order: never larger than the ladder's cap
                wanted = min(wanted, market.round_quantity(config.max_order_quantity))
        except ArithmeticError:  # not a quantity the market can hold (the config's bounds make this unreachable)
            log.error("[%s] max_sweep_quantity %s cannot be written at the market's precision: no sweep",
                      market.symbol, config.max_sweep_quantity)
            return None
        total = Decimal(0)
        limit: Decimal | None = None
        for price, quantity in levels:
            if own_best is not None and (price >= own_best if resting is Side.SELL else price <= own_best):
                break  # our own orders rest here or beyond
            gap = reference - price if resting is Side.SELL else price - reference
            if gap <= 0:
                break  # not mispriced (nor is anything beyond)
            others = quantity - ours.get((resting, price), Decimal(0))
            if others <= 0:
                continue  # only our own quantity at this price
            if gap / reference > config.max_sweep_price_deviation:
                if limit is None:
                    return None  # too far from the index to trust: leave the side alone
                break
            total += others
            limit = price
            if total >= wanted:
                break
        if limit is None:
            return None
        quantity = market.round_quantity(min(total, wanted))
        if quantity <= 0 or quantity < market.min_quantity:
            return None
        taker = resting.opposite
        # A buy's limit rounds up and a sell's down so an off-grid order is still reached; never onto our own.
        price = market.ceil_price(limit) if taker is Side.BUY else market.floor_price(limit)
        if own_best is not None and (price >= own_best if taker is Side.BUY else price <= own_best):
            return None
        return Quote(taker, price, quantity, OrderType.IOC, tag=SWEEP_TAG)

    def on_order_event(self, event: OrderEvent, order: Order, ctx: StrategyContext) -> None:
        if event.fill is not None and order.request.tag == SWEEP_TAG:
            self.sweep_filled += event.fill.quantity

    # ---- status -------------------------------------------------------------------------------------------

    def status(self) -> Mapping[str, Any]:
        bids = sum(1 for q in self._ladder if q.side is Side.BUY)
        return {
            "mode": self.config.mode,
            "levels": len(self.levels),
            "bids_quoted": bids,
            "asks_quoted": len(self._ladder) - bids,
            "anchor_reference": None if self._anchor is None else str(self._anchor),
            "anchored_at": self._anchor_at,
            "price_change_amount": str(self.config.price_change_amount),
            "maintenance_interval": self.maintenance,
            **self.counters,
            "last_refresh_at": self._last_refresh,
            "last_sweep_at": self._last_sweep,
            "swept_quantity": str(self.swept_quantity),
            "sweep_filled": str(self.sweep_filled),
            "ignored_keys": list(self.ignored_keys),
            "external_exchange": self.external_exchange,
            "external_symbol": self.external_symbol,
        }
