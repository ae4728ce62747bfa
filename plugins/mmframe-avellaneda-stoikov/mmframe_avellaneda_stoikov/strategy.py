"""The two inventory-aware strategies, ``avellaneda_stoikov`` and ``glft``, on one shared quoting machinery.

Every evaluation (the engine calls :meth:`ModelStrategy.desired_orders` after every tick, order event and refresh
interval) the strategy:

1. takes the mid ``s`` (the index price), the inventory ``q`` (the market's position, in base units) and the model's
   parameters: ``sigma``, ``A`` and ``k`` from the config where they are fixed, else from the online estimators
   (:mod:`mmframe_avellaneda_stoikov.estimators`, fed by :meth:`~ModelStrategy.on_tick` and
   :meth:`~ModelStrategy.on_trade`). While a parameter the model needs has no estimate yet, it quotes nothing and
   its status says what it waits for;
2. asks the model for a bid and an ask (floats: :mod:`mmframe_avellaneda_stoikov.models`);
3. widens them to ``min_spread`` if they are closer than that, adds ``levels - 1`` further levels on each side,
   ``level_spacing`` apart;
4. puts them on the tick grid, bids rounded down and asks up (never more aggressive than the model), written at the
   market's price precision; a bid at or below 0 is dropped, two levels never share a price, and a bid is never at
   or above an ask;
5. drops the bids when the position is at or above ``max_inventory``, and the asks when it is at or below
   ``-max_inventory``;
6. hands back the very :class:`~mmframe.Quote` objects of the last evaluation for the quotes that did not change
   (the engine skips its work for an unchanged book).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any, ClassVar

import attrs

from mmframe import ConfigError, Market, PriceTick, Quote, Side, Strategy, StrategyContext, Trade

from .config import AvellanedaStoikovConfig, CommonConfig, GLFTConfig
from .estimators import IntensityEstimate, IntensityEstimator, VolatilityEstimate, VolatilityEstimator
from .models import (
    as_average_spread,
    as_reservation_price,
    as_spread,
    glft_coefficients,
    glft_depths,
    time_left,
)

__all__ = ["GLFT", "AvellanedaStoikov", "ModelStrategy", "Parameters", "to_grid"]

log = logging.getLogger("mmframe.strategy.avellaneda_stoikov")

#: A model price within a millionth of a tick of a grid price counts as that grid price (float noise: ``100 - 0.74``
#: is ``99.25999999999999`` in binary floating point, and must round down to 99.26, not 99.25).
_SNAP = Decimal("1e-6")
#: Model prices at or beyond this are not quoted (no market quotes them, and Decimal could not hold them exactly).
_MAX_PRICE = 1e15


def to_grid(price: float, market: Market, side: Side) -> Decimal | None:
    """*price* on *market*'s tick grid, never more aggressive: a bid rounded down, an ask up, written at the
    market's price precision. ``None`` for a price that is not a positive finite number below 1e15, that the market's
    precision cannot write exactly, or that rounds to 0 or below."""
    if not (math.isfinite(price) and 0 < price < _MAX_PRICE):
        return None
    tick = market.tick_size
    rounding = ROUND_FLOOR if side is Side.BUY else ROUND_CEILING
    try:
        ticks = Decimal(repr(price)) / tick
        if ticks.adjusted() < 21:  # else a millionth of a tick is beyond the 28 digits of Decimal: nothing to snap
            ticks = ticks.quantize(_SNAP)
        grid = (ticks.to_integral_value(rounding=rounding) * tick).quantize(market.price_step)
    except ArithmeticError:  # a price the market's precision cannot write within 28 digits
        return None
    return grid if grid > 0 else None


@attrs.frozen
class Parameters:
    """The model's market parameters in effect: each a float, or ``None`` when neither fixed nor estimated yet."""

    sigma: float | None
    A: float | None
    k: float | None


class ModelStrategy(Strategy):
    """What both strategies share: the estimators, the ladder on the tick grid, the inventory limits, the status.

    A subclass says which parameters it needs (:meth:`needs`) and where its level-0 bid and ask are
    (:meth:`model_quotes`)."""

    Config: ClassVar[type[CommonConfig]] = CommonConfig
    #: The quotes follow the index, the inventory and the clock, never the external depth: a depth update alone
    #: does not make the market decide again.
    wake_on_depth = False

    def __init__(self, config: CommonConfig, market: Market) -> None:
        super().__init__(config, market)
        self.config: CommonConfig = config
        self.quantity = self._checked_quantity(config, market)
        self.gamma = float(config.gamma)
        self.level_spacing = float(config.level_spacing if config.level_spacing is not None else market.tick_size)
        self.min_spread = float(config.min_spread) if config.min_spread is not None else 0.0
        self.max_inventory = config.max_inventory
        self.volatility = VolatilityEstimator(config.sigma_window, config.min_sigma_samples)
        self.intensity = IntensityEstimator(config.intensity_window, config.min_trades, float(market.tick_size))
        #: When the strategy started (the engine's clock): the first session's start in the ``finite`` mode.
        self.started_at: float | None = None
        #: Why nothing is quoted (an estimate missing, no index price), or ``None`` while quoting.
        self.waiting: str | None = "no index price yet"
        self.figures: dict[str, float | None] = {}
        self.limited: str | None = None  # the side dropped by max_inventory
        self._quiet = False  # not quoting since the last time it was logged
        #: The quotes of the last evaluation by (side, price, quantity, tag): an unchanged quote is handed back as
        #: the same object.
        self._quotes: dict[tuple[Side, Decimal, Decimal, str], Quote] = {}
        self._last: list[Quote] = []
        self._sigma_estimate: VolatilityEstimate | None = None
        self._intensity_estimate: IntensityEstimate | None = None

    @staticmethod
    def _checked_quantity(config: CommonConfig, market: Market) -> Decimal:
        quantity = config.quantity
        try:
            rounded = market.round_quantity(quantity)
        except ArithmeticError:
            rounded = None
        if rounded != quantity:
            raise ConfigError(
                f"quantity {quantity} has more decimal places than the market's quantity precision "
                f"({market.quantity_precision})"
            )
        if rounded < market.min_quantity:
            raise ConfigError(f"quantity {quantity} is below the market's minimum quantity {market.min_quantity}")
        return rounded

    # ---- what a model says --------------------------------------------------------------------------------------

    def needs(self) -> tuple[bool, bool, bool]:
        """Whether the model needs ``(sigma, A, k)`` to quote."""
        return True, True, True

    def model_quotes(self, s: float, q: float, p: Parameters, now: float) -> tuple[float, float]:
        """The level-0 ``(bid, ask)`` for mid *s* and inventory *q* (base units); records its figures in
        :attr:`figures`."""
        raise NotImplementedError

    # ---- market data --------------------------------------------------------------------------------------------

    def on_start(self, ctx: StrategyContext) -> None:
        self.started_at = ctx.now

    def on_tick(self, tick: PriceTick, ctx: StrategyContext) -> None:
        now = ctx.now
        self.volatility.observe(now, float(tick.price))
        self.intensity.start(now)  # trades are measured against the mid from now on

    def on_trade(self, trade: Trade, ctx: StrategyContext) -> None:
        mid = ctx.index_price
        if mid is None:
            return  # no mid to measure the trade's distance from
        self.intensity.observe(ctx.now, abs(float(trade.price - mid)))

    def parameters(self, now: float) -> tuple[Parameters, list[str]]:
        """The parameters in effect at *now*, and why those the model needs and lacks are missing."""
        config = self.config
        volatility = self._sigma_estimate = self.volatility.estimate(now)
        intensity = self._intensity_estimate = self.intensity.estimate(now)
        sigma = float(config.sigma) if config.sigma is not None else volatility.sigma
        A = float(config.A) if config.A is not None else intensity.A
        k = float(config.k) if config.k is not None else intensity.k
        need_sigma, need_A, need_k = self.needs()
        reasons = []
        if need_sigma and sigma is None and volatility.reason:
            reasons.append(volatility.reason)
        if ((need_A and A is None) or (need_k and k is None)) and intensity.reason:
            reasons.append(intensity.reason)
        return Parameters(sigma, A, k), reasons

    # ---- the desired book ---------------------------------------------------------------------------------------

    def desired_orders(self, ctx: StrategyContext) -> list[Quote]:
        index = ctx.index_price
        if index is None:
            return self._nothing("no index price")
        now = ctx.now
        if self.started_at is None:
            self.started_at = now
        params, reasons = self.parameters(now)
        if reasons:
            self.figures = {}
            return self._nothing("; ".join(reasons))
        if self._quiet:
            log.info("[%s] quoting: sigma %s, A %s, k %s", self.market.symbol, params.sigma, params.A, params.k)
            self._quiet = False
        self.waiting = None
        position = ctx.position.base
        bid, ask = self.model_quotes(float(index), float(position), params, now)
        spread = ask - bid
        if spread < self.min_spread:
            pad = (self.min_spread - spread) / 2
            bid, ask = bid - pad, ask + pad
        self.figures["model_spread"] = spread
        self.figures["spread"] = ask - bid
        return self._book(ctx.market, bid, ask, position)

    def _nothing(self, reason: str) -> list[Quote]:
        if not self._quiet:  # once per stretch without quotes (the reason's counts change on every tick)
            log.info("[%s] not quoting: %s", self.market.symbol, reason)
            self._quiet = True
        self.waiting = reason
        self.limited = None
        self._quotes = {}
        self._last = []
        return []

    def _book(self, market: Market, bid: float, ask: float, position: Decimal) -> list[Quote]:
        tick = market.tick_size
        bids: list[Decimal] = []
        asks: list[Decimal] = []
        for level in range(self.config.levels):
            out = level * self.level_spacing
            price = to_grid(bid - out, market, Side.BUY)
            if price is not None and bids and price >= bids[-1]:
                price = bids[-1] - tick  # two levels never share a price
            if price is not None and price > 0:
                bids.append(price)
            price = to_grid(ask + out, market, Side.SELL)
            if price is not None and asks and price <= asks[-1]:
                price = asks[-1] + tick
            if price is not None:
                asks.append(price)
        if bids and asks and bids[0] >= asks[0]:
            # Only float noise within a millionth of a tick can get here (the model's bid is below its ask and
            # rounding goes outwards): widen the asks so the best ask is a tick above the best bid.
            lift = bids[0] + tick - asks[0]
            asks = [price + lift for price in asks]
        limit = self.max_inventory
        self.limited = None
        if limit is not None and position >= limit:
            bids, self.limited = [], "bids"
        elif limit is not None and position <= -limit:
            asks, self.limited = [], "asks"
        quantity = self.quantity
        quotes: dict[tuple[Side, Decimal, Decimal, str], Quote] = {}
        book: list[Quote] = []
        for side, prices in ((Side.BUY, bids), (Side.SELL, asks)):
            for level, price in enumerate(prices, start=1):
                key = (side, price, quantity, f"L{level}")
                quote = self._quotes.get(key)
                if quote is None:
                    quote = Quote(side, price, quantity, tag=key[3])
                quotes[key] = quote
                book.append(quote)
        self._quotes = quotes
        last = self._last
        if len(book) == len(last) and all(a is b for a, b in zip(book, last, strict=True)):
            return last  # nothing changed: the very same list of the very same quotes
        self._last = book
        return book

    # ---- status -------------------------------------------------------------------------------------------------

    def status(self) -> Mapping[str, Any]:
        config = self.config
        volatility, intensity = self._sigma_estimate, self._intensity_estimate

        def source(fixed: Decimal | None) -> str:
            return "config" if fixed is not None else "estimate"

        sigma = float(config.sigma) if config.sigma is not None else (volatility.sigma if volatility else None)
        A = float(config.A) if config.A is not None else (intensity.A if intensity else None)
        k = float(config.k) if config.k is not None else (intensity.k if intensity else None)
        bids = [q.price for q in self._last if q.side is Side.BUY]
        asks = [q.price for q in self._last if q.side is Side.SELL]
        figures = {
            "reservation_price": None, "spread": None, "model_spread": None, "q": None, "time_left": None,
        }  # fmt: skip
        figures.update(self.figures)
        return {
            "model": self.name,
            "waiting": self.waiting,
            "sigma": sigma,
            "sigma_source": source(config.sigma),
            "A": A,
            "A_source": source(config.A),
            "k": k,
            "k_source": source(config.k),
            "gamma": self.gamma,
            **figures,
            "bid": float(bids[0]) if bids else None,
            "ask": float(asks[0]) if asks else None,
            "bids_quoted": len(bids),
            "asks_quoted": len(asks),
            "inventory_limit": self.limited,
            "sigma_samples": volatility.samples if volatility else 0,
            "trades_in_window": self.intensity.trades,
            "intensity_points": intensity.points if intensity else 0,
        }


class AvellanedaStoikov(ModelStrategy):
    """Avellaneda & Stoikov (2008): quotes around the reservation price ``r = s - q gamma sigma^2 (T - t)``, a total
    spread ``gamma sigma^2 (T - t) + (2 / gamma) ln(1 + gamma / k)`` (mode ``inventory``), or the paper's symmetric
    benchmark: that spread's average over a horizon (or ``spread``), centred on the mid (mode ``symmetric``)."""

    name: ClassVar[str] = "avellaneda_stoikov"
    Config: ClassVar[type[AvellanedaStoikovConfig]] = AvellanedaStoikovConfig

    def __init__(self, config: AvellanedaStoikovConfig, market: Market) -> None:
        super().__init__(config, market)
        self.config: AvellanedaStoikovConfig = config
        self.horizon = float(config.horizon)

    def needs(self) -> tuple[bool, bool, bool]:
        fixed_spread = self.config.mode == "symmetric" and self.config.spread is not None
        return not fixed_spread, False, not fixed_spread

    def model_quotes(self, s: float, q: float, p: Parameters, now: float) -> tuple[float, float]:
        config = self.config
        assert self.started_at is not None
        tau = time_left(now, self.started_at, self.horizon, config.horizon_mode)
        if config.mode == "symmetric":
            if config.spread is not None:
                spread = float(config.spread)
            else:
                assert p.sigma is not None and p.k is not None
                spread = as_average_spread(self.gamma, p.sigma, p.k, self.horizon, config.horizon_mode)
            r = s
        else:
            assert p.sigma is not None and p.k is not None
            r = as_reservation_price(s, q, self.gamma, p.sigma, tau)
            spread = as_spread(self.gamma, p.sigma, p.k, tau)
        self.figures = {"reservation_price": r, "spread": spread, "q": q, "time_left": tau}
        return r - spread / 2, r + spread / 2

    def status(self) -> Mapping[str, Any]:
        config = self.config
        return {
            **super().status(),
            "mode": config.mode,
            "horizon": self.horizon,
            "horizon_mode": config.horizon_mode,
        }


class GLFT(ModelStrategy):
    """Guéant, Lehalle & Fernandez-Tapia (2013): the closed-form asymptotic (infinite-horizon) quotes, with the
    order size ``Delta`` = ``quantity`` and the inventory counted in orders (``n = q / Delta``)::

        bid = s - (c1 + Delta (2n + 1) / 2 sigma c2),   ask = s + (c1 - Delta (2n - 1) / 2 sigma c2)

    (:func:`mmframe_avellaneda_stoikov.models.glft_depths`)."""

    name: ClassVar[str] = "glft"
    Config: ClassVar[type[GLFTConfig]] = GLFTConfig

    def __init__(self, config: GLFTConfig, market: Market) -> None:
        super().__init__(config, market)
        self.config: GLFTConfig = config
        self.delta = float(self.quantity)

    def model_quotes(self, s: float, q: float, p: Parameters, now: float) -> tuple[float, float]:
        assert p.sigma is not None and p.A is not None and p.k is not None
        delta = self.delta
        c1, c2 = glft_coefficients(self.gamma, p.A, p.k, delta)
        n = q / delta
        bid_depth, ask_depth = glft_depths(n, p.sigma, c1, c2, delta)
        self.figures = {
            # the price the quotes are centred on, and their distance apart (it does not depend on q)
            "reservation_price": s + (ask_depth - bid_depth) / 2,
            "spread": bid_depth + ask_depth,
            "q": q,
            "time_left": None,
            "q_orders": n,
            "c1": c1,
            "c2": c2,
            "bid_depth": bid_depth,
            "ask_depth": ask_depth,
        }
        return s - bid_depth, s + ask_depth
