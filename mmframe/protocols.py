"""The three extension points: :class:`Strategy`, :class:`ExchangeFeed` and :class:`OrderSink`.

A plugin provides one by registering a *class* through the matching registration hook
(``register_strategies``, ``register_feeds``, ``register_sinks``). The core structures the component's
configuration mapping into the class's ``Config`` attrs class (unknown keys and bad values are refused with a
message naming the key) and constructs the component from it.

Strategies are synchronous decision logic, called on the market's own task: they never block and never await.
Feeds and sinks are long-running async components with ``run(task_status=...)``; they talk to the engine through
listeners (plain synchronous callables) so that nothing a market does can stall a shared connection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import attrs
import trio

from ._models import (
    AmendRequest,
    DepthSnapshot,
    Fill,
    Market,
    MarketData,
    Order,
    OrderEvent,
    OrderRequest,
    PriceTick,
    Quote,
    Side,
    Trade,
)

if TYPE_CHECKING:  # feedtools and _latency import this module; at run time the protocols only check names
    from ._book import OrderBook
    from ._engine.spec import MarketSpec, MarketStatus
    from ._latency import LatencyHistogram
    from ._models import MarketKey
    from .feedtools import FeedSymbolStats

__all__ = [
    "AmendsOrders",
    "BoundsRequestTime",
    "Engine",
    "ExchangeFeed",
    "GatesRequests",
    "KeepsLocalBooks",
    "Named",
    "OrderSink",
    "Position",
    "ReportsCircuit",
    "ReportsDegraded",
    "ReportsRequestLatency",
    "ReportsSinkStatistics",
    "ReportsSymbolStatistics",
    "Strategy",
    "StrategyContext",
    "Subscription",
]


class Subscription:
    """What ``subscribe`` returns: call :meth:`close` (or leave the ``with`` block) to stop the deliveries."""

    __slots__ = ("_on_close",)

    def __init__(self, on_close: Callable[[], None]) -> None:
        self._on_close: Callable[[], None] | None = on_close

    def close(self) -> None:
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            on_close()

    @property
    def closed(self) -> bool:
        return self._on_close is None

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@attrs.frozen
class Position:
    """A market's inventory and profit, from its fills, in exact decimals.

    ``base`` is the net quantity held (negative: short); ``quote`` is the cash it cost (negative when we paid);
    ``pnl(mark)`` marks the inventory at *mark* and adds the cash: what we would have if we closed at *mark*.
    """

    base: Decimal = Decimal(0)
    quote: Decimal = Decimal(0)
    fees: Decimal = Decimal(0)
    volume: Decimal = Decimal(0)
    fills: int = 0

    def after(self, side: Side, price: Decimal, quantity: Decimal, fee: Decimal = Decimal(0)) -> Position:
        return Position(
            base=self.base + side.sign * quantity,
            quote=self.quote - side.sign * price * quantity,
            fees=self.fees + fee,
            volume=self.volume + quantity,
            fills=self.fills + 1,
        )

    def pnl(self, mark: Decimal | None) -> Decimal:
        if mark is None:
            return self.quote - self.fees if self.base == 0 else Decimal(0)
        return self.quote + self.base * mark - self.fees


@runtime_checkable
class StrategyContext(Protocol):
    """What the engine shows a strategy about its market. Read-only but for :meth:`submit` and :meth:`cancel`."""

    @property
    def market(self) -> Market: ...

    @property
    def now(self) -> float:
        """The market's clock (``trio.current_time()``), in seconds."""
        ...

    @property
    def index_price(self) -> Decimal | None:
        """The last good index price, or ``None`` before the first one (or while it is stale)."""
        ...

    @property
    def last_tick(self) -> PriceTick | None: ...

    @property
    def depth(self) -> DepthSnapshot | None:
        """The last external depth snapshot, if the feed delivers any."""
        ...

    @property
    def position(self) -> Position: ...

    def live_orders(self, side: Side | None = None, *, include_cancelling: bool = False) -> Sequence[Order]:
        """Our orders that are pending or resting, not being cancelled; best price first. With
        *include_cancelling*, also those whose cancel is under way (they may still fill until it is confirmed)."""
        ...

    @property
    def fill_history(self) -> Sequence[Fill]:
        """Fills of this market's orders (our client-id prefix) from before this run started, oldest first: earlier
        runs in this process and, with a store, those recorded by earlier processes. A strategy that keeps state
        per order (a grid's slots) rebuilds it from these and :meth:`live_orders` in ``on_start``. The market's
        :attr:`position` already includes them."""
        ...

    def submit(self, quote: Quote) -> str:
        """Send one order now, outside the desired book (for example an IOC that sweeps a mispriced order).

        It passes the same risk gate as every order. Returns its client order id.
        """
        ...

    def cancel(self, client_order_id: str) -> None:
        """Cancel one of our orders now."""
        ...


class Strategy:
    """Base class of strategies: override :meth:`desired_orders` and whichever ``on_*`` callbacks you need.

    A strategy says what book it wants; the engine makes it so. After every tick, depth update, order event and
    refresh interval the engine calls :meth:`desired_orders` (the acknowledgement of an order it has just sent is
    the exception: alone, it cannot change the answer, unless the step held an order back), and the shared
    reconciler turns the difference between that and our live orders into the fewest cancels and places.

    Subclasses set ``name`` (the name it is registered and configured under) and ``Config`` (an attrs class the
    market's configuration mapping is structured into; the instance is passed to ``__init__``).
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type[Any]]
    #: Seconds between two snapshots of the *local* book (the sink's depth, other participants' orders included)
    #: handed to :meth:`on_local_depth`; ``None``: the strategy does not look at the local book.
    local_depth_interval: float | None = None
    #: Whether an external depth snapshot alone makes the market decide again (call :meth:`desired_orders`). A
    #: strategy whose quotes never depend on the external depth sets it to ``False``: its market then wakes for
    #: ticks, order events and its refresh interval only (a depth feed at 10 updates a second costs it nothing), and
    #: :meth:`on_depth` still gets the latest snapshot (and ``ctx.depth`` shows it) at the market's next step.
    wake_on_depth: bool = True

    def __init__(self, config: Any, market: Market) -> None:
        self.config = config
        self.market = market

    def on_start(self, ctx: StrategyContext) -> None:
        """Called once, on the market's task, before the first tick."""

    def on_tick(self, tick: PriceTick, ctx: StrategyContext) -> None:
        """Called with every index tick that passed the sanity checks (conflated: the latest wins)."""

    def on_depth(self, depth: DepthSnapshot, ctx: StrategyContext) -> None:
        """Called with every external depth snapshot."""

    def on_trade(self, trade: Trade, ctx: StrategyContext) -> None:
        """Called with every public trade the market's feed delivers (feeds that report trades: a recorded file,
        a feed plugin that subscribes to the exchange's trade stream), oldest first, at the market's next step: a
        trade alone does not make the market decide again."""

    def on_local_depth(self, depth: DepthSnapshot, ctx: StrategyContext) -> None:
        """Called with a snapshot of our own exchange's book every ``local_depth_interval`` seconds."""

    def on_order_event(self, event: OrderEvent, order: Order, ctx: StrategyContext) -> None:
        """Called after the tracker applied *event*; *order* is the order's new state."""

    def desired_orders(self, ctx: StrategyContext) -> Iterable[Quote] | None:
        """The book this strategy wants now. ``[]`` pulls every quote; ``None`` leaves the book as it is."""
        raise NotImplementedError

    def on_stop(self, ctx: StrategyContext) -> None:
        """Called once when the market stops (its orders are cancelled by the engine afterwards)."""

    def status(self) -> Mapping[str, Any]:
        """Strategy-specific figures for the market's status (JSON-able values)."""
        return {}


@runtime_checkable
class ExchangeFeed(Protocol):
    """A source of index prices (and optionally depth) for many symbols.

    One instance serves every market configured with the same feed name and options. ``run`` owns the
    connections and returns only when cancelled; ``subscribe`` may be called before or after ``run`` started.
    Listeners are synchronous and must be called on the trio thread; they never raise and never block.
    """

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None: ...

    def subscribe(self, symbol: str, listener: Callable[[MarketData], None]) -> Subscription: ...


@runtime_checkable
class OrderSink(Protocol):
    """Where orders go: the match engine (over HTTP) or the in-process paper book.

    Every outcome comes back as an :class:`~mmframe.OrderEvent` to the listeners subscribed for the order's
    symbol and client-id prefix: ``place`` and ``cancel`` return once the sink has taken the request in hand. A
    sink never creates a second order for one client order id.
    """

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None: ...

    def subscribe(self, symbol: str, prefix: str, listener: Callable[[OrderEvent], None]) -> Subscription: ...

    async def place(self, requests: Sequence[OrderRequest]) -> None: ...

    async def cancel(self, symbol: str, client_order_ids: Sequence[str]) -> None: ...

    async def cancel_all(self, symbol: str, prefix: str = "") -> int:
        """Cancel every open order of *symbol* whose client id starts with *prefix*; returns how many."""
        ...

    async def open_orders(self, symbol: str, prefix: str = "") -> list[Order]: ...

    async def depth(self, symbol: str, limit: int = 20) -> DepthSnapshot: ...


# ---------------------------------------------------------------------------------------------------------------
# Optional abilities: a feed or sink that has one implements the protocol (structurally: no base class needed), and
# the core checks it with ``isinstance``. A component without it simply does not report that figure.
# ---------------------------------------------------------------------------------------------------------------


@runtime_checkable
class Named(Protocol):
    """A component (or component class) with the name it reports under: a feed's channel name, a sink's label."""

    name: str


@runtime_checkable
class AmendsOrders(Protocol):
    """A sink that can change a resting order's price and quantity in one message (the match engine's
    ``orders/amend``, OKX's amend-order, Binance's keep-priority amend): a market then moves a quote it no longer
    wants to the price of one it wants with one amend instead of a cancel and a place, and a quantity decrease at the
    same price keeps the order's place in the queue.

    ``amend`` returns once the sink has taken the requests in hand; they are applied in order, each against the book
    the ones before it left. Every request ends in exactly one ``amended`` event (with the order's new ``price`` and
    ``quantity``) or one ``amend_rejected`` event (with the reason; the order stands as before) for its order, besides
    the order's own events (a fill that raced the amend, its end). An amend to the order's current price and quantity
    changes nothing (it answers ``amended``): retrying one is safe. An amend never takes liquidity: one whose new
    price would trade is refused (self-trade prevention names itself when the order it would meet is ours). A sink
    without this ability gets a cancel and a place instead."""

    async def amend(self, requests: Sequence[AmendRequest]) -> None: ...


@runtime_checkable
class ReportsDegraded(Protocol):
    """A sink that can say it cannot take orders just now (its engine unreachable): markets hold their orders and
    show ``degraded`` until it recovers. Read on every market step: keep it cheap."""

    @property
    def degraded(self) -> bool: ...


@runtime_checkable
class ReportsCircuit(Protocol):
    """A sink with a circuit breaker: ``circuit_open`` is true while it refuses requests without trying
    (``mmframe_sink_circuit_open``)."""

    @property
    def circuit_open(self) -> bool: ...


@runtime_checkable
class ReportsRequestLatency(Protocol):
    """A sink that times its requests (``mmframe_sink_request_seconds``), in a
    :class:`mmframe.sinktools.LatencyHistogram`."""

    @property
    def request_latency(self) -> LatencyHistogram: ...


@runtime_checkable
class BoundsRequestTime(Protocol):
    """A sink whose requests land within ``request_timeout`` seconds of being sent, or never (it gives a request up
    after that and does not send it again once cancelled). In a cluster an instance stops sending for a market that
    long before its lease can expire, so that nothing it sent lands under the next owner; a sink without this
    ability is assumed to need no more than a quarter of the lease's time to live."""

    @property
    def request_timeout(self) -> float: ...


@runtime_checkable
class GatesRequests(Protocol):
    """A sink that queues, batches or retries requests, and asks a market's gate before every attempt.

    ``set_gate(prefix, may_send)`` installs *may_send* for the orders whose client id starts with *prefix* (``None``
    removes it). Before each attempt to send a place, a cancel or a cancel-all for such orders, the sink calls
    ``may_send()``; when it says no, those orders are not sent (a place never sent ends ``expired`` with a reason, a
    cancel is dropped): the market has lost the right to send, and whoever has it now cleans up. With
    :class:`BoundsRequestTime`, nothing the sink sends for a market lands later than ``request_timeout`` after its
    gate closed. Must be cheap: it is asked per order."""

    def set_gate(self, prefix: str, may_send: Callable[[], bool] | None) -> None: ...


@runtime_checkable
class ReportsSinkStatistics(Protocol):
    """A sink with counters of its own (requests, retries, failures, ...): a mapping of name to number, exported as
    ``mmframe_sink_operations_total{kind=name}``."""

    @property
    def statistics(self) -> Mapping[str, int | float]: ...


@runtime_checkable
class ReportsSymbolStatistics(Protocol):
    """A feed that reports per-symbol figures (last price, age of the last update, messages, rejects, reconnects),
    as :class:`mmframe.feedtools.FeedHub` keeps them: read by the market status and the ``mmframe_feed_*``
    metrics. Must not raise; must not block."""

    def symbol_statistics(self, symbol: str) -> FeedSymbolStats: ...


@runtime_checkable
class KeepsLocalBooks(Protocol):
    """A sink whose matching books live in this process (the ``paper`` sink): what rests on them can be read without
    I/O, also after the sink has stopped. ``mmframe serve`` reports what is left there when it stops."""

    def book(self, symbol: str) -> OrderBook: ...


@runtime_checkable
class Engine(Protocol):
    """The running engine, as the ``engine_started`` and ``engine_stopping`` hooks hand it to a plugin: every market
    it supervises, their statuses, and starting, stopping and reloading one. The methods are async: keep the engine
    and call them from a task of your own, never from the hook itself."""

    @property
    def markets(self) -> Mapping[MarketKey, MarketSpec]:
        """Every market the engine supervises (running, stopped or failed), by key."""
        ...

    def status(self, key: MarketKey | None = None) -> list[MarketStatus]:
        """The status of one market, or of every market."""
        ...

    async def start_market(self, spec: MarketSpec) -> MarketStatus:
        """Start a market; returns once it quotes, or has failed to start (its status says why)."""
        ...

    async def stop_market(self, key: MarketKey) -> MarketStatus:
        """Stop a market; its orders are cancelled before this returns."""
        ...

    async def reload_market(self, key: MarketKey, spec: MarketSpec | None = None) -> MarketStatus:
        """Stop a market and start it again, with *spec* (same key) if given."""
        ...
