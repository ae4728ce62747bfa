"""What a market is configured with and what it reports: :class:`MarketSpec`, :class:`RestartPolicy`,
:class:`MarketState`, :class:`MarketStatus`, and :class:`MarketHalted` (the kill switch)."""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import attrs

from .._errors import MMFrameError
from .._models import Market
from .._symbols import compact_symbol
from .._validators import positive
from ..feedtools import FeedSymbolStats
from .index import IndexGuard, IndexSource
from .masking import masked
from .reconcile import Tolerance
from .risk import RiskLimits

__all__ = ["MarketHalted", "MarketSpec", "MarketState", "MarketStatus", "RestartPolicy"]


class MarketHalted(MMFrameError):
    """Raised inside a market when its kill switch trips: the market cancels everything and is not restarted."""


class MarketState(enum.StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"
    HALTED = "halted"
    DEGRADED = "degraded"  # running, but the sink cannot take orders now: the market waits and then catches up


@attrs.frozen
class RestartPolicy:
    """What happens when a market's strategy, feed handling or order flow raises.

    :param max_restarts: how many times the market is restarted before it stays failed (0: never).
    :param backoff: seconds before the first restart; doubled each time up to ``max_backoff``.
    """

    max_restarts: int = 0
    backoff: float = 1.0
    max_backoff: float = 60.0


@attrs.frozen
class MarketSpec:
    """Everything needed to run one market.

    :param market: symbol, market type, tick grid and precisions.
    :param strategy: the registered strategy name; ``strategy_config`` is structured into its ``Config``.
    :param feed: the registered feed name; ``feed_config`` is structured into its ``Config``. Markets whose feed
        name and config are equal share one feed instance.
    :param index_symbol: the symbol the feed knows the index by (default: the market symbol without ``/``).
    :param refresh_interval: the longest time between two evaluations of the desired book.
    :param stale_after: seconds without a good index tick after which the market pulls its quotes; a tick whose
        own timestamp (the exchange's or the bus publisher's) is already older than this is rejected as stale.
    :param max_tick_jump: a tick further than this fraction from the index is rejected, and accepted only once
        ``confirm_ticks`` consecutive ticks agree on the new level (within ``index_guard.confirm_band``, over at
        least ``index_guard.confirm_seconds``); see the index screen in docs/architecture.md.
    :param index_guard: the rest of the index screen: agreement band, clock skew, composite band, halt circuit.
    :param index_sources: more feeds to take the index from beside ``feed``: the index is then their median
        (a composite index, as exchanges build theirs), a source that disagrees or goes stale is dropped.
    :param name: the market's id in logs and statuses (the store uses the seed's ``{currency_id}_{market_type}``).
    :param seed: seeds the market's random numbers (the size variation of placed orders).
    :param leftovers: what to do at start with open orders an earlier run left (found by client-id prefix):
        ``cancel`` them (the default), or ``adopt`` them (the reconciler then keeps those that match the desired book).
        The periodic reconciliation treats an order with our prefix that we do not track the same way.
    :param reconcile_interval: seconds between two reconciliations of our orders against the sink's open orders
        (``OrderSink.open_orders`` for our prefix), 0 turns it off. An order the sink has and we do not track (or
        know as finished) is cancelled (or adopted, see ``leftovers``); an order we believe pending or resting that
        the sink does not have in two consecutive passes is marked gone (``expired``, or ``cancelled`` when we had
        asked for its cancel); a cancel not confirmed after ``reconcile_grace`` is sent again.
    :param reconcile_grace: seconds an order must have been sent (or its cancel asked) before a reconciliation
        judges it: what is still on its way to the book is never declared gone.
    :param amend: move a resting order with one amend instead of a cancel and a place, when the sink can amend
        (:class:`~mmframe.protocols.AmendsOrders`); ``False``: always cancel and place.
    :param max_messages_per_second: the market's message budget: at most this many cancels, amends and places in
        any one second; a step that would send more sends the levels nearest the touch first and leaves the far
        levels for the next steps (``None``: no budget). See :mod:`mmframe._engine.budget`.
    """

    market: Market
    strategy: str
    strategy_config: Mapping[str, Any] = attrs.field(factory=dict)
    feed: str = "sim"
    feed_config: Mapping[str, Any] = attrs.field(factory=dict, repr=lambda config: repr(masked(config)))
    index_symbol: str = ""
    risk: RiskLimits = RiskLimits()
    tolerance: Tolerance = Tolerance()
    refresh_interval: float = attrs.field(default=1.0, validator=positive)
    stale_after: float = attrs.field(default=10.0, validator=positive)
    max_tick_jump: Decimal = attrs.field(default=Decimal("0.1"), converter=Decimal)
    confirm_ticks: int = attrs.field(default=5, validator=attrs.validators.ge(1))
    index_guard: IndexGuard = IndexGuard()
    index_sources: tuple[IndexSource, ...] = attrs.field(default=(), converter=tuple)
    restart: RestartPolicy = RestartPolicy()
    cleanup_timeout: float = 3.0
    name: str = ""
    leftovers: str = attrs.field(default="cancel", validator=attrs.validators.in_(("cancel", "adopt")))
    seed: int | None = None
    reconcile_interval: float = attrs.field(default=5.0, validator=attrs.validators.ge(0))
    reconcile_grace: float = attrs.field(default=2.0, validator=attrs.validators.ge(0))
    amend: bool = True
    max_messages_per_second: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.ge(1))
    )

    @property
    def label(self) -> str:
        """How logs and statuses name the market: ``name`` (the seed's ``879_1``) or ``BTC/USDT:spot``."""
        return self.name or str(self.key)

    @property
    def key(self) -> Any:
        return self.market.key

    @property
    def feed_symbol(self) -> str:
        return self.index_symbol or compact_symbol(self.market.symbol)

    def __attrs_post_init__(self) -> None:
        # Two sources are the same when they are the same feed on the same symbol and the same channel (a config's
        # ``exchange``, as on the bus) or, for a feed without channels, the same config.
        sources = [(self.feed, self.feed_config, self.feed_symbol)]
        sources += [(s.feed, s.feed_config, s.index_symbol or self.feed_symbol) for s in self.index_sources]
        identities = [
            (feed, symbol, config.get("exchange") or json.dumps(config, sort_keys=True, default=str))
            for feed, config, symbol in sources
        ]
        names = self.source_names
        repeated = sorted({names[i] for i, key in enumerate(identities) if identities.count(key) > 1})
        if repeated:
            # The same feed and symbol twice would "agree" with itself: every tick a confirmed move.
            raise ValueError(f"index_sources: {', '.join(repeated)} is named more than once (with the market's own "
                             "feed or another source); each source must be a different feed, channel or symbol")

    @property
    def source_names(self) -> list[str]:
        """How statuses and logs name the index sources: ``feed:symbol`` (``redis:BTCUSDT@okex`` on the bus)."""
        names = [_source_name(self.feed, self.feed_config, self.feed_symbol)]
        for source in self.index_sources:
            names.append(_source_name(source.feed, source.feed_config, source.index_symbol or self.feed_symbol))
        return names


def _source_name(feed: str, config: Mapping[str, Any], symbol: str) -> str:
    exchange = config.get("exchange")
    return f"{feed}:{symbol}" + (f"@{exchange}" if exchange and exchange != feed else "")


@attrs.frozen
class MarketStatus:
    """A market's state and figures at one moment (JSON-able through the converter)."""

    market: str
    symbol: str
    market_type: int
    strategy: str
    state: MarketState
    error: str = ""
    restarts: int = 0
    index_price: Decimal | None = None
    stale: bool = False
    index_in_doubt: bool = False
    bids: int = 0
    asks: int = 0
    cancelling: int = 0
    active_orders: int = 0
    ticks: int = 0
    ticks_rejected: int = 0
    ticks_rejected_by_reason: Mapping[str, int] = attrs.field(factory=dict)
    index_sources: Sequence[Mapping[str, Any]] = ()
    orders_placed: int = 0
    orders_cancelled: int = 0
    orders_amended: int = 0
    """Amends sent: each one message, where a cancel and a place would have been two."""
    amends_rejected: int = 0
    """Amends the sink refused (the order stayed as it was, and is cancelled and placed instead)."""
    messages_held: int = 0
    """Messages the market's budget (``max_messages_per_second``) held back at its last step: 0 when caught up."""
    behind_seconds: float = 0.0
    """Seconds since the budget first held back what the market still has not sent (0 when caught up)."""
    orders_rejected: int = 0
    orders_vetoed: int = 0
    orders_deferred: int = 0
    order_events: int = 0
    """Order events the market applied (each one handed to the ``order_event`` hook)."""
    reconciliations: int = 0
    reconcile_cancelled: int = 0
    reconcile_adopted: int = 0
    reconcile_gone: int = 0
    cancel_retries: int = 0
    reconcile_errors: int = 0
    fills: int = 0
    volume: Decimal = Decimal(0)
    position: Decimal = Decimal(0)
    pnl: Decimal = Decimal(0)
    last_veto: str = ""
    uptime_seconds: float = 0.0
    index_age: float | None = None
    feed: FeedSymbolStats | None = None
    strategy_status: Mapping[str, Any] = attrs.field(factory=dict)

