"""The backtester's simulated exchange: an :class:`~mmframe.OrderSink` whose fills come from replayed market data.

Our orders rest in mmframe's price-time matching book (:mod:`mmframe._book`), one per symbol, owned by ``mmframe``:
self-trade prevention, the tick grid and order types work as on the paper sink and the reference engine. Nobody
else's order is in that book: the rest of the market is what the replayed data shows, and it fills ours by two
models (see ``docs/backtesting.md`` for the rules and where they come from):

**Queue position.** A new order joins *behind* the displayed size at its price (``ahead`` = the displayed quantity
there, from the latest depth snapshot; 0 at a price the snapshot does not show). A public trade at our price
consumes the queue from its front: first the public quantity ahead of our first order, then that order, then the
public quantity between it and our next, and so on; what is left of ``ahead`` afterwards is ``ahead`` less the
public quantity the trade consumed. A trade at a price *through* ours (a sale below our bid, a purchase above our
ask) fills our order completely at our price: the aggressor would have met us first. A decrease of the displayed
size at our price that the trades at that price since the last snapshot do not explain (cancellations) is split
between the quantity ahead of us and behind us by :class:`QueueModel`: ``risk_averse`` (all behind us: ``ahead``
only shrinks when the level becomes smaller than it), ``proportional`` (in proportion: ``ahead`` shrinks by the
decrease times ``ahead / size``) or ``power:n`` (the share taken ahead of us is ``ahead^n / (ahead^n +
behind^n)``; ``power:1`` is ``proportional``). An increase joins behind us. ``ahead`` never exceeds the displayed
size.

**Latency.** An order or a cancel reaches the exchange ``entry_latency`` after the engine sent it; what the exchange
says (accepted, filled, cancelled) reaches the engine ``response_latency`` after it happened; market data reaches
the engine ``data_latency`` after the exchange saw it. Each is a constant or a seeded draw from a distribution
(:class:`Latency`), and nothing overtakes what was sent before it on the same way (one connection delivers in
order: a cancel never arrives before its place, a fill never before the acceptance). ``cancel_all`` waits its turn
like a cancel; ``open_orders`` answers at once. When the data ends (:meth:`SimExchange.finish`) what is still on
its way arrives at once.

An order that crosses the displayed depth when it arrives takes liquidity: it fills against the displayed levels up
to its price (taker fee, the displayed prices), which are used up until the next snapshot; a post-only order that
would do so is rejected. A snapshot that shows others' orders at or through one of our resting orders' price (an
ask at or below our bid) fills ours as a maker, at our price, for up to the quantity displayed there: on the real
book those orders would have met ours first. Fees are per market (maker and taker rates of the notional; a negative
rate is a rebate).

The exchange keeps its own ledger per symbol (:meth:`SimExchange.position`, :attr:`SimExchange.messages`) — what the
backtest reports — and it never trades our orders with each other.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import random
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from decimal import ROUND_DOWN, Decimal
from typing import Any, ClassVar

import attrs
import trio

from .._book import OrderBook, RestingOrder, SubmitStatus
from .._errors import ConfigError
from .._listeners import OrderEventListeners, OrderListener
from .._models import (
    DepthSnapshot,
    Fill,
    Liquidity,
    Order,
    OrderEvent,
    OrderEventKind,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    Trade,
)
from ..config import parse_duration
from ..protocols import Position, Subscription

__all__ = ["ExchangeConfig", "Latency", "QueueModel", "SimExchange", "Timeline"]

log = logging.getLogger("mmframe.backtest")

_ZERO = Decimal(0)
OWNER = "mmframe"
TAPE = "tape"


# ---------------------------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------------------------


@attrs.frozen
class Latency:
    """A delay in seconds: ``constant`` (``a``), ``uniform`` between ``a`` and ``b``, ``exponential`` with mean
    ``a``, or ``lognormal`` with median ``a`` and log standard deviation ``b``. Draws are capped at 60 s."""

    kind: str = "constant"
    a: float = 0.0
    b: float = 0.0

    KINDS: ClassVar[tuple[str, ...]] = ("constant", "uniform", "exponential", "lognormal")

    def __attrs_post_init__(self) -> None:
        if self.kind not in self.KINDS:
            raise ValueError(f"unknown latency distribution {self.kind!r} (one of {', '.join(self.KINDS)})")
        for name, value in (("a", self.a), ("b", self.b)):
            if not math.isfinite(value) or value < 0 or value > 60:
                raise ValueError(f"latency {name} must be between 0 and 60 seconds, got {value!r}")
        if self.kind == "uniform" and self.b < self.a:
            raise ValueError(f"uniform latency: high ({self.b}) is below low ({self.a})")

    @property
    def zero(self) -> bool:
        return self.kind == "constant" and self.a == 0

    def sample(self, rng: random.Random) -> float:
        kind = self.kind
        if kind == "constant":
            return self.a
        if kind == "uniform":
            value = rng.uniform(self.a, self.b)
        elif kind == "exponential":
            value = rng.expovariate(1 / self.a) if self.a > 0 else 0.0
        else:
            value = self.a * math.exp(rng.gauss(0.0, self.b))
        return min(value, 60.0)

    @classmethod
    def parse(cls, value: object, name: str = "latency") -> Latency:
        """From a number of seconds, a duration (``"5ms"``), or a mapping: ``{"dist": "uniform", "low": "1ms",
        "high": "9ms"}``, ``{"dist": "exponential", "mean": "5ms"}``, ``{"dist": "lognormal", "median": "5ms",
        "sigma": 0.5}``."""
        try:
            if isinstance(value, Latency):
                return value
            if isinstance(value, Mapping):
                spec = dict(value)
                kind = spec.pop("dist", "constant")
                keys = {"constant": ("value",), "uniform": ("low", "high"), "exponential": ("mean",),
                        "lognormal": ("median", "sigma")}.get(kind)
                if keys is None:
                    raise ValueError(f"unknown distribution {kind!r} (one of {', '.join(cls.KINDS)})")
                unknown = set(spec) - set(keys)
                missing = set(keys) - set(spec)
                if unknown or missing:
                    raise ValueError(f"a {kind} latency takes {', '.join(keys)}"
                                     + (f" (unknown: {', '.join(sorted(unknown))})" if unknown else "")
                                     + (f" (missing: {', '.join(sorted(missing))})" if missing else ""))
                first = parse_duration(spec[keys[0]])
                second = 0.0
                if len(keys) > 1:
                    second = float(spec[keys[1]]) if kind == "lognormal" else parse_duration(spec[keys[1]])
                return cls(kind, first, second)
            if isinstance(value, bool):
                raise ValueError("a latency is a number of seconds, a duration or a distribution")
            return cls("constant", parse_duration(value))  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{name}: {exc}") from None


@attrs.frozen
class QueueModel:
    """How a decrease of the displayed size at our price that trades do not explain is split between the queue ahead
    of our order and behind it; see the module documentation. ``exponent`` 0 is ``risk_averse``."""

    name: str = "proportional"
    exponent: float = 1.0

    @classmethod
    def parse(cls, value: str) -> QueueModel:
        if value == "risk_averse":
            return cls("risk_averse", 0.0)
        if value == "proportional":
            return cls("proportional", 1.0)
        if value.startswith("power:"):
            try:
                exponent = float(value.partition(":")[2])
            except ValueError:
                exponent = math.nan
            if not math.isfinite(exponent) or not 0 < exponent <= 10:
                raise ConfigError(f"queue_model {value!r}: the power must be a number in (0, 10]")
            return cls(value, exponent)
        raise ConfigError(f"queue_model {value!r}: one of risk_averse, proportional, power:N")

    def ahead_after(self, ahead: Decimal, size: Decimal, decrease: Decimal) -> Decimal:
        """``ahead`` after the displayed *size* (before) lost *decrease* to cancellations (never more than what is
        left of the level)."""
        left = max(_ZERO, size - decrease)
        if decrease <= 0 or ahead <= 0 or self.exponent == 0:
            return max(_ZERO, min(ahead, left))
        if self.exponent == 1:
            share = ahead / size if size > 0 else Decimal(1)
        else:
            behind = max(0.0, float(size - ahead))
            front, back = float(ahead) ** self.exponent, behind**self.exponent
            share = Decimal(repr(front / (front + back))) if front + back > 0 else Decimal(1)
        return max(_ZERO, min(ahead - decrease * share, left))


@attrs.frozen
class ExchangeConfig:
    """The simulated exchange's options (``mmframe backtest --exchange JSON``; every key optional).

    :param queue_model: ``risk_averse``, ``proportional`` or ``power:N`` (see :class:`QueueModel`).
    :param entry_latency: order entry (place and cancel) delay; see :class:`Latency` for the forms.
    :param response_latency: order event delay, exchange to engine.
    :param data_latency: market data delay, exchange to engine.
    :param maker_fee: fee rate of a maker fill's notional (``"0.0002"`` = 2 bp; negative: a rebate).
    :param taker_fee: fee rate of a taker fill's notional.
    :param fees: per-symbol ``{"BTC/USDT": {"maker": ..., "taker": ...}}`` overriding the two above.
    :param seed: seed of the latency draws.
    """

    queue_model: QueueModel = attrs.field(default=QueueModel(), converter=lambda v: v if isinstance(
        v, QueueModel) else QueueModel.parse(str(v)))
    entry_latency: Latency = attrs.field(default=Latency(), converter=lambda v: Latency.parse(v, "entry_latency"))
    response_latency: Latency = attrs.field(default=Latency(),
                                            converter=lambda v: Latency.parse(v, "response_latency"))
    data_latency: Latency = attrs.field(default=Latency(), converter=lambda v: Latency.parse(v, "data_latency"))
    maker_fee: Decimal = attrs.field(default=_ZERO, converter=lambda v: _rate(v, "maker_fee"))
    taker_fee: Decimal = attrs.field(default=_ZERO, converter=lambda v: _rate(v, "taker_fee"))
    fees: Mapping[str, tuple[Decimal, Decimal]] = attrs.field(factory=dict, converter=lambda v: _fees(v))
    seed: int = 0

    def fee_rates(self, symbol: str) -> tuple[Decimal, Decimal]:
        return self.fees.get(symbol, (self.maker_fee, self.taker_fee))

    def describe(self) -> dict[str, Any]:
        def latency(value: Latency) -> Any:
            return value.a if value.kind == "constant" else {"dist": value.kind, "a": value.a, "b": value.b}

        return {
            "queue_model": self.queue_model.name,
            "latency": {"entry": latency(self.entry_latency), "response": latency(self.response_latency),
                        "data": latency(self.data_latency)},
            "fees": {"maker": str(self.maker_fee), "taker": str(self.taker_fee),
                     **{symbol: {"maker": str(m), "taker": str(t)} for symbol, (m, t) in self.fees.items()}},
        }


def _rate(value: object, name: str) -> Decimal:
    from .._models import to_decimal

    try:
        rate = to_decimal(value, name=name)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: {exc}") from None
    if not Decimal("-0.1") <= rate <= Decimal("0.1"):
        raise ConfigError(f"{name} must be between -0.1 and 0.1 (a rate of the notional), got {value!r}")
    return rate


def _fees(value: object) -> dict[str, tuple[Decimal, Decimal]]:
    if not isinstance(value, Mapping):
        raise ConfigError("fees must map a symbol to {\"maker\": rate, \"taker\": rate}")
    out = {}
    for symbol, rates in value.items():
        if isinstance(rates, tuple) and len(rates) == 2:
            out[str(symbol)] = (_rate(rates[0], "maker"), _rate(rates[1], "taker"))
            continue
        if not isinstance(rates, Mapping) or set(rates) - {"maker", "taker"}:
            raise ConfigError(f"fees[{symbol!r}] must be {{\"maker\": rate, \"taker\": rate}}")
        out[str(symbol)] = (_rate(rates.get("maker", 0), f"fees[{symbol!r}].maker"),
                            _rate(rates.get("taker", 0), f"fees[{symbol!r}].taker"))
    return out


# ---------------------------------------------------------------------------------------------------------------
# The timeline: what happens later on the virtual clock
# ---------------------------------------------------------------------------------------------------------------


class Timeline:
    """Actions due at a time of the (virtual) clock, run in time order (and in the order scheduled, at one time) by
    the backtest's driver: orders reaching the exchange, events reaching the engine, delayed market data."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = itertools.count()
        self._wake = trio.Event()

    def __len__(self) -> int:
        return len(self._heap)

    def at(self, when: float, action: Callable[..., None], *args: Any) -> None:
        heap = self._heap
        if not heap or when < heap[0][0]:
            self._wake.set()  # the driver may be asleep until a later time
        heapq.heappush(heap, (when, next(self._seq), action, args))

    async def run_until(self, target: float) -> None:
        """Let the clock reach *target*, running every action due until then at its time (the engine runs in
        between: an order sent at an action's time is scheduled and run in turn)."""
        heap = self._heap
        while True:
            now = trio.current_time()
            if heap and heap[0][0] <= target:
                when = heap[0][0]
                if when > now:
                    await self._sleep_until(when)
                    continue
                _, _, action, args = heapq.heappop(heap)
                action(*args)
                continue
            if target > now:
                await self._sleep_until(target)
                continue
            return

    async def _sleep_until(self, when: float) -> None:
        if self._wake.is_set():
            self._wake = trio.Event()
        with trio.move_on_at(when):
            await self._wake.wait()

    def run_all(self, skip: Callable[..., None] | None = None, instead: Callable[..., None] | None = None) -> None:
        """Run every scheduled action now, in order (and those they schedule); an action equal to *skip* runs
        *instead* (with its arguments) in its place."""
        heap = self._heap
        while heap:
            _, _, action, args = heapq.heappop(heap)
            if skip is not None and action == skip:
                if instead is not None:
                    instead(*args)
                continue
            action(*args)

    def due_by(self, when: float) -> bool:
        """Whether something is scheduled at or before *when*."""
        return bool(self._heap) and self._heap[0][0] <= when


# ---------------------------------------------------------------------------------------------------------------
# The exchange
# ---------------------------------------------------------------------------------------------------------------


def _liquid(levels: tuple[tuple[Decimal, Decimal], ...]) -> dict[Decimal, Decimal]:
    """A side of a snapshot as price -> quantity, without its levels of 0."""
    book = dict(levels)
    if _ZERO in book.values():
        return {p: q for p, q in book.items() if q > 0}
    return book


def _best(levels: tuple[tuple[Decimal, Decimal], ...]) -> Decimal | None:
    """The best price of a side of a snapshot (best first) that holds something."""
    for price, quantity in levels:
        if quantity > 0:
            return price
    return None


class _Symbol:
    """One symbol's state: our orders' book, how much public quantity is ahead of each, the displayed depth."""

    __slots__ = ("_asks", "_bids", "ahead", "book", "fee_rates", "last_entry", "last_response", "offset", "order_ids",
                 "position", "quantum", "raw_asks", "raw_bids", "rng", "traded")

    def __init__(self, symbol: str, fee_rates: tuple[Decimal, Decimal], seed: int) -> None:
        # No memory of finished orders: the tape's own orders would push ours out (SimExchange._seen catches a
        # client order id used again).
        self.book = OrderBook(symbol, remember_finished=0)
        self.ahead: dict[str, Decimal] = {}  # client order id -> public quantity ahead of it at its price
        # The displayed depth: the latest snapshot's levels, and (made when first needed: most snapshots are only
        # looked at) price -> quantity, less what we took since.
        self.raw_bids: tuple[tuple[Decimal, Decimal], ...] = ()
        self.raw_asks: tuple[tuple[Decimal, Decimal], ...] = ()
        self._bids: dict[Decimal, Decimal] | None = {}
        self._asks: dict[Decimal, Decimal] | None = {}
        self.traded: dict[Decimal, Decimal] = {}  # public quantity traded at a price since the latest snapshot
        self.fee_rates = fee_rates
        self.position = Position()
        #: What an order that crossed the displayed book filled as a taker before the rest went on our book (the
        #: book counts only what it holds): added to the filled quantity it reports; and the id it was accepted under.
        self.offset: dict[str, Decimal] = {}
        self.order_ids: dict[str, str] = {}
        #: The quantity step of our orders (their quantities are written at the market's precision): a fill is
        #: never a fraction of it.
        self.quantum = Decimal(1)
        #: The symbol's own latency draws, and the arrival of its last request and event (each symbol's way keeps
        #: its order; a symbol's draws never depend on another's: a path of a study is the same in any company).
        self.rng = random.Random(f"{seed}:{symbol}")
        self.last_entry = self.last_response = -math.inf

    @property
    def bids(self) -> dict[Decimal, Decimal]:
        if self._bids is None:
            self._bids = _liquid(self.raw_bids)  # a level of 0 is no liquidity (a removed level)
        return self._bids

    @property
    def asks(self) -> dict[Decimal, Decimal]:
        if self._asks is None:
            self._asks = _liquid(self.raw_asks)
        return self._asks

    def show(self, depth: DepthSnapshot) -> None:
        """The new snapshot's levels (the dicts are made again when next asked for)."""
        self.raw_bids, self.raw_asks = depth.bids, depth.asks
        self._bids = self._asks = None


class SimExchange:
    """The simulated exchange as an :class:`~mmframe.OrderSink`; see the module documentation.

    :param timeline: where delayed actions wait (the driver runs it).
    :param wall: epoch seconds now (the backtest's virtual wall clock), stamped on fills and events.
    """

    name: ClassVar[str] = "backtest"

    def __init__(self, config: ExchangeConfig, timeline: Timeline, wall: Callable[[], float]) -> None:
        self.config = config
        self.timeline = timeline
        self.wall = wall
        self._symbols: dict[str, _Symbol] = {}
        self._listeners = OrderEventListeners(log)
        self._trade_ids = itertools.count(1)
        self._tape_ids = itertools.count(1)
        self._entry = None if config.entry_latency.zero else config.entry_latency
        self._response = None if config.response_latency.zero else config.response_latency
        #: Our client order ids already used (the engine never reuses one; a duplicate is ignored, as on a real
        #: engine), the latest 200,000.
        self._seen: OrderedDict[str, None] = OrderedDict()
        #: Messages the engine sent, per symbol: ``places``, ``cancels`` (one per order named), ``cancel_alls``.
        self.messages: dict[str, dict[str, int]] = {}
        #: Order events emitted (delivered now or scheduled): the driver lets the engine run after any.
        self.emitted = 0
        #: Per symbol: orders placed, and orders that got at least one fill.
        self.placed: dict[str, int] = {}
        self.filled_orders: dict[str, int] = {}

    # ---- the OrderSink -----------------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()

    def subscribe(self, symbol: str, prefix: str, listener: OrderListener) -> Subscription:
        return self._listeners.subscribe(symbol, prefix, listener)

    async def place(self, requests: Sequence[OrderRequest]) -> None:
        await trio.lowlevel.checkpoint()
        for request in requests:
            counts = self._count(request.symbol)
            counts["places"] += 1
            self.placed[request.symbol] = self.placed.get(request.symbol, 0) + 1
            if self._entry is None:
                self._place(request)
            else:
                self.timeline.at(self._arrival(request.symbol), self._place, request)

    async def cancel(self, symbol: str, client_order_ids: Sequence[str]) -> None:
        await trio.lowlevel.checkpoint()
        self._count(symbol)["cancels"] += len(client_order_ids)
        if self._entry is None:
            self._cancel(symbol, tuple(client_order_ids))
        else:
            self.timeline.at(self._arrival(symbol), self._cancel, symbol,
                             tuple(client_order_ids))

    async def cancel_all(self, symbol: str, prefix: str = "") -> int:
        """Cancel every order of ours under *prefix*; with an entry latency the request reaches the exchange in its
        turn, after what was sent before it (a place still on its way is cancelled too), and this returns then."""
        await trio.lowlevel.checkpoint()
        self._count(symbol)["cancel_alls"] += 1
        if self._entry is None:
            return self._cancel_all(symbol, prefix)
        done = trio.Event()
        result: list[int] = []

        def arrive() -> None:
            result.append(self._cancel_all(symbol, prefix))
            done.set()

        self.timeline.at(self._arrival(symbol), arrive)
        await done.wait()
        return result[0]

    def _cancel_all(self, symbol: str, prefix: str) -> int:
        state = self._symbols.get(symbol)
        if state is None:
            return 0
        cancelled = state.book._withdraw_all(OWNER, prefix)
        for order in cancelled:
            state.ahead.pop(order.client_order_id, None)
            self._emit(self._cancelled(state, symbol, order))
        return len(cancelled)

    def finish(self) -> None:
        """The data has ended. An order still on its way never reached the exchange within it: it expires
        ("the data ended first"); cancels and events on their way arrive now, in order; and from here on the
        exchange acts at once (the engine's way out needs no driver to run the timeline)."""
        self._entry = self._response = None
        self.timeline.run_all(skip=self._place, instead=self._never_arrived)

    def _never_arrived(self, request: OrderRequest) -> None:
        self._emit(OrderEvent(OrderEventKind.EXPIRED, request.client_order_id, request.symbol,
                              reason="the data ended before the order reached the exchange", timestamp=self.wall()))

    async def open_orders(self, symbol: str, prefix: str = "") -> list[Order]:
        """Our open orders. With a response latency it answers once the events sent before the question have
        arrived: an order whose fill is still on its way is never missing from the answer before its fill arrives
        (the engine's reconciliation would take it for gone)."""
        await trio.lowlevel.checkpoint()
        state = self._symbols.get(symbol)
        if self._response is not None and state is not None and state.last_response > trio.current_time():
            caught_up = trio.Event()
            self.timeline.at(state.last_response, caught_up.set)
            await caught_up.wait()
        if state is None:
            return []
        out = []
        for o in state.book.open_orders(prefix, owner=OWNER):
            coid = o.client_order_id
            request = o.payload if isinstance(o.payload, OrderRequest) else OrderRequest(
                coid, symbol, o.side, o.type, o.quantity, o.price)
            filled = o.filled_quantity + state.offset.get(coid, _ZERO)
            out.append(Order(request=request, status=OrderStatus.PARTIALLY_FILLED if filled else OrderStatus.OPEN,
                             filled_quantity=filled, order_id=state.order_ids.get(coid, o.order_id)))
        return out

    async def depth(self, symbol: str, limit: int = 20) -> DepthSnapshot:
        """The displayed depth with our orders added: what the market would show."""
        await trio.lowlevel.checkpoint()
        state = self._symbol(symbol)
        ours_bids, ours_asks = state.book.depth(None)
        bids = dict(state.bids)
        asks = dict(state.asks)
        for price, qty in ours_bids:
            bids[price] = bids.get(price, _ZERO) + qty
        for price, qty in ours_asks:
            asks[price] = asks.get(price, _ZERO) + qty
        return DepthSnapshot(exchange="backtest", symbol=symbol,
                             bids=sorted(bids.items(), reverse=True)[:limit], asks=sorted(asks.items())[:limit])

    # ---- what the backtest reads ---------------------------------------------------------------------------------

    def position(self, symbol: str) -> Position:
        state = self._symbols.get(symbol)
        return state.position if state is not None else Position()

    def book(self, symbol: str) -> OrderBook:
        """Our orders' book of *symbol* (:class:`~mmframe.protocols.KeepsLocalBooks`)."""
        return self._symbol(symbol).book

    def best_quotes(self, symbol: str) -> tuple[Decimal | None, Decimal | None]:
        state = self._symbols.get(symbol)
        if state is None:
            return None, None
        return state.book.best_bid, state.book.best_ask

    def queue_ahead(self, symbol: str, client_order_id: str) -> Decimal | None:
        """The public quantity ahead of our order (``None``: not open)."""
        state = self._symbols.get(symbol)
        return None if state is None else state.ahead.get(client_order_id)

    def message_count(self, symbol: str) -> int:
        counts = self.messages.get(symbol)
        return 0 if counts is None else counts["places"] + counts["cancels"] + counts["cancel_alls"]

    # ---- market data (the driver) ----------------------------------------------------------------------------

    def on_data(self, item: object, symbol: str | None = None) -> None:
        """Replayed market data of our *symbol* (default: the item's): trades and depth snapshots."""
        if isinstance(item, Trade):
            self.on_trade(item, symbol)
        elif isinstance(item, DepthSnapshot):
            self.on_depth(item, symbol)

    def on_depth(self, depth: DepthSnapshot, symbol: str | None = None) -> None:
        """A new snapshot of the displayed book: the queue ahead of our orders follows the sizes at their prices."""
        symbol = symbol or depth.symbol
        state = self._symbols.get(symbol)
        if state is None:
            state = self._symbol(symbol)
        if not state.ahead:
            state.show(depth)
        else:
            old_bids, old_asks = state.bids, state.asks
            state.show(depth)
            model = self.config.queue_model
            lowest_bid = depth.bids[-1][0] if depth.bids else None
            highest_ask = depth.asks[-1][0] if depth.asks else None
            live = state.book._live
            for coid, ahead in state.ahead.items():
                order = live.get(coid)
                if order is None or order.price is None:
                    continue
                price = order.price
                if order.side is Side.BUY:
                    if lowest_bid is None or price < lowest_bid:
                        continue  # beyond what the snapshot shows: unknown, unchanged
                    before, now = old_bids.get(price, _ZERO), state.bids.get(price, _ZERO)
                else:
                    if highest_ask is None or price > highest_ask:
                        continue
                    before, now = old_asks.get(price, _ZERO), state.asks.get(price, _ZERO)
                decrease = before - now - state.traded.get(price, _ZERO)
                state.ahead[coid] = model.ahead_after(ahead, before, decrease) if decrease > 0 else min(ahead, now)
        state.traded.clear()
        book = state.book
        bid = book.best_bid
        if bid is not None:
            best = _best(depth.asks)
            if best is not None and best <= bid:
                self._crossed_by(state, symbol, Side.SELL, bid, state.asks)
        ask = book.best_ask
        if ask is not None:
            best = _best(depth.bids)
            if best is not None and best >= ask:
                self._crossed_by(state, symbol, Side.BUY, ask, state.bids)

    def _crossed_by(self, state: _Symbol, symbol: str, aggressor: Side, ours: Decimal,
                    displayed: dict[Decimal, Decimal]) -> None:
        """The displayed book now shows others' orders at or through our best price on the other side: on the real
        book those orders would have met ours first. They fill our orders (maker, at our prices) for up to their
        displayed quantity, which they use up."""
        # Level by level from the least aggressive: a displayed ask at p meets our bids at p or above, so the asks
        # nearest our price take the bids they alone can reach before the deeper asks take what is left.
        if aggressor is Side.SELL:
            levels = sorted(((p, q) for p, q in displayed.items() if p <= ours), reverse=True)
        else:
            levels = sorted((p, q) for p, q in displayed.items() if p >= ours)
        for price, size in levels:
            filled = self._take(state, symbol, aggressor, size, price, maker=True)
            if filled <= 0:
                continue
            if size > filled:
                displayed[price] = size - filled  # the displayed orders that met ours are gone
            else:
                del displayed[price]

    def could_fill(self, trade: Trade, symbol: str | None = None) -> bool:
        """Whether *trade* reaches one of our orders (a cheap look before :meth:`on_trade`: a trade that cannot
        fill us needs no moment of the engine's)."""
        state = self._symbols.get(symbol or trade.symbol)
        if state is None:
            return False
        book = state.book
        if trade.side is Side.SELL:
            best = book.best_bid
            return best is not None and best >= trade.price
        best = book.best_ask
        return best is not None and best <= trade.price

    def could_cross(self, depth: DepthSnapshot, symbol: str | None = None) -> bool:
        """Whether *depth* shows others' orders at or through one of our resting prices (:meth:`on_depth` would
        fill us)."""
        state = self._symbols.get(symbol or depth.symbol)
        if state is None:
            return False
        book = state.book
        bid = book.best_bid
        if bid is not None:
            best = _best(depth.asks)
            if best is not None and best <= bid:
                return True
        ask = book.best_ask
        if ask is not None:
            best = _best(depth.bids)
            return best is not None and best >= ask
        return False

    def on_trade(self, trade: Trade, symbol: str | None = None) -> None:
        """A public trade: it consumes the displayed queue at its price and may fill our orders (see the module
        documentation)."""
        symbol = symbol or trade.symbol
        state = self._symbols.get(symbol)
        if state is None:
            state = self._symbol(symbol)
        price, quantity = trade.price, trade.quantity
        traded = state.traded
        traded[price] = traded.get(price, _ZERO) + quantity
        book = state.book
        # The side of ours the aggressor meets: a seller meets our bids, a buyer our asks.
        if trade.side is Side.SELL:
            best = book.best_bid
            if best is None or best < price:
                return
            passive = Side.BUY
        else:
            best = book.best_ask
            if best is None or best > price:
                return
            passive = Side.SELL
        fill = _ZERO  # our quantity at prices the trade went through fills completely
        at_price: list[RestingOrder] = []
        for order in book._live.values():  # arrival order: time priority
            if order.side is not passive or order.owner != OWNER or order.price is None:
                continue
            if order.price == price:
                at_price.append(order)
            elif (order.price > price) if passive is Side.BUY else (order.price < price):
                fill += order.remaining_quantity
        if at_price:
            ahead = state.ahead
            left = quantity
            consumed = _ZERO  # public quantity the trade consumed, from the front of the queue
            for order in at_price:
                take = min(left, max(_ZERO, ahead.get(order.client_order_id, _ZERO) - consumed))
                left -= take
                consumed += take
                if left <= 0:
                    break
                mine = min(left, order.remaining_quantity)
                fill += mine
                left -= mine  # (a fractional ahead can make this a fraction of a lot: _take rounds it down)
            for order in at_price:
                coid = order.client_order_id
                if coid in ahead:
                    ahead[coid] = max(_ZERO, ahead[coid] - consumed)
        if fill > 0:
            self._take(state, symbol, trade.side, fill, price, maker=True)

    def hit(self, symbol: str, aggressor: Side, quantity: Decimal) -> Decimal:
        """A market order of *quantity* from someone else meets our best orders on the other side now (the
        synthetic model's arrivals). Returns the quantity of ours it filled."""
        state = self._symbols.get(symbol)
        if state is None:
            return _ZERO
        return self._take(state, symbol, aggressor, quantity, None, maker=True)

    # ---- internals ---------------------------------------------------------------------------------------------

    def _symbol(self, symbol: str) -> _Symbol:
        state = self._symbols.get(symbol)
        if state is None:
            state = self._symbols[symbol] = _Symbol(symbol, self.config.fee_rates(symbol), self.config.seed)
        return state

    def _count(self, symbol: str) -> dict[str, int]:
        counts = self.messages.get(symbol)
        if counts is None:
            counts = self.messages[symbol] = {"places": 0, "cancels": 0, "cancel_alls": 0}
        return counts

    def _take(self, state: _Symbol, symbol: str, aggressor: Side, quantity: Decimal, limit: Decimal | None,
              *, maker: bool) -> Decimal:
        """Fill our resting orders on the side *aggressor* meets, best price first and in time priority, for up to
        *quantity* (at their own prices): a tape order on our book. Emits our fills; returns what was filled."""
        quantity = quantity.quantize(state.quantum, ROUND_DOWN)  # never a fraction of a lot of ours
        if quantity <= 0:
            return _ZERO
        result = state.book.submit(
            client_order_id=f"{TAPE}-{next(self._tape_ids)}", owner=TAPE, side=aggressor,
            type=OrderType.MARKET if limit is None else OrderType.IOC, price=limit, quantity=quantity,
        )
        rate = state.fee_rates[0] if maker else state.fee_rates[1]
        filled = _ZERO
        for trade in result.trades:
            party = trade.maker
            if party.owner != OWNER:
                continue
            filled += trade.quantity
            coid = party.client_order_id
            offset = state.offset.get(coid, _ZERO) if state.offset else _ZERO
            order_id = state.order_ids.get(coid, party.order_id) if state.order_ids else party.order_id
            self._fill(state, symbol, coid, party.side, trade.price, trade.quantity, rate,
                       Liquidity.MAKER, party.filled_quantity + offset, trade.maker_filled, order_id)
            if trade.maker_filled:
                state.ahead.pop(coid, None)
                state.offset.pop(coid, None)
                state.order_ids.pop(coid, None)
        return filled

    def _fill(self, state: _Symbol, symbol: str, coid: str, side: Side, price: Decimal, quantity: Decimal,
              rate: Decimal, liquidity: Liquidity, cumulative: Decimal, complete: bool, order_id: str | None) -> None:
        now = self.wall()
        fee = price * quantity * rate
        state.position = state.position.after(side, price, quantity, fee)
        if cumulative == quantity:  # the order's first fill
            self.filled_orders[symbol] = self.filled_orders.get(symbol, 0) + 1
        fill = Fill(f"bt-{next(self._trade_ids)}", coid, symbol, side, price=price, quantity=quantity,
                    liquidity=liquidity, fee=fee, timestamp=now)
        self._emit(OrderEvent(OrderEventKind.FILLED if complete else OrderEventKind.PARTIALLY_FILLED, coid, symbol,
                              cumulative, order_id, fill, timestamp=now))

    def _place(self, request: OrderRequest) -> None:
        symbol, coid = request.symbol, request.client_order_id
        seen = self._seen
        if coid in seen:
            return  # a client order id used before: nothing happens, as on the reference engine
        seen[coid] = None
        if len(seen) > 200_000:
            seen.popitem(last=False)
        state = self._symbol(symbol)
        exponent = request.quantity.as_tuple().exponent
        if isinstance(exponent, int) and exponent < state.quantum.as_tuple().exponent:  # type: ignore[operator]
            state.quantum = Decimal(1).scaleb(exponent)
        crossing = self._crossing(state, request)
        if crossing:
            self._place_crossing(state, request, crossing)
            return
        status, order, _, _, expired = state.book._enter(coid, OWNER, request.side, request.type, request.price,
                                                         request.quantity, request)
        if status is SubmitStatus.DUPLICATE:
            return
        if status is SubmitStatus.REJECTED:
            self._emit(OrderEvent(OrderEventKind.REJECTED, coid, symbol, order_id=order.order_id, reason=order.reason,
                                  timestamp=self.wall()))
            return
        assert isinstance(order, RestingOrder)
        self._emit(OrderEvent(OrderEventKind.ACCEPTED, coid, symbol, _ZERO, order.order_id, timestamp=self.wall()))
        # Our book holds only our orders, and self-trade prevention stops ours from meeting each other: no trades.
        if expired > 0:
            self._emit(OrderEvent(OrderEventKind.EXPIRED, coid, symbol, order.filled_quantity, order.order_id,
                                  reason=order.reason, timestamp=self.wall()))
            return
        if order.status is OrderStatus.OPEN and request.price is not None:
            levels = state.bids if request.side is Side.BUY else state.asks
            state.ahead[coid] = levels.get(request.price, _ZERO)

    def _crossing(self, state: _Symbol, request: OrderRequest) -> list[tuple[Decimal, Decimal]]:
        """The displayed levels *request* would take, best first, up to its price."""
        if request.side is Side.BUY:
            if not state.asks or (request.price is not None and request.price < min(state.asks)):
                return []
            levels = sorted(state.asks.items())
            return levels if request.price is None else [(p, q) for p, q in levels if p <= request.price]
        if not state.bids or (request.price is not None and request.price > max(state.bids)):
            return []
        levels = sorted(state.bids.items(), reverse=True)
        return levels if request.price is None else [(p, q) for p, q in levels if p >= request.price]

    def _place_crossing(self, state: _Symbol, request: OrderRequest, levels: list[tuple[Decimal, Decimal]]) -> None:
        """An order that crosses the displayed book takes it (taker, at the displayed prices, which are used up until
        the next snapshot); what is left rests (a limit order, first at its new price) or expires (IOC, market). A
        post-only order is rejected."""
        symbol, coid = request.symbol, request.client_order_id
        if request.type is OrderType.POST_ONLY:
            self._emit(OrderEvent(OrderEventKind.REJECTED, coid, symbol, reason="post-only order would cross the book",
                                  timestamp=self.wall()))
            return
        if request.quantity <= 0:
            self._emit(OrderEvent(OrderEventKind.REJECTED, coid, symbol, reason="quantity must be positive",
                                  timestamp=self.wall()))
            return
        order_id = f"x{next(self._trade_ids)}"
        self._emit(OrderEvent(OrderEventKind.ACCEPTED, coid, symbol, _ZERO, order_id, timestamp=self.wall()))
        displayed = state.asks if request.side is Side.BUY else state.bids
        rate = state.fee_rates[1]
        left, taken = request.quantity, _ZERO
        for price, size in levels:
            qty = min(left, size).quantize(state.quantum, ROUND_DOWN)
            if qty <= 0:
                continue
            left -= qty
            taken += qty
            if size > qty:
                displayed[price] = size - qty
            else:
                displayed.pop(price, None)
            self._fill(state, symbol, coid, request.side, price, qty, rate, Liquidity.TAKER, taken, left == 0,
                       order_id)
            if left == 0:
                return
        if request.type is not OrderType.LIMIT or request.price is None:
            self._emit(OrderEvent(OrderEventKind.EXPIRED, coid, symbol, taken, order_id,
                                  reason="immediate-or-cancel: no more liquidity at the limit price",
                                  timestamp=self.wall()))
            return
        status, order, _, _, expired = state.book._enter(coid, OWNER, request.side, OrderType.LIMIT, request.price,
                                                         left, request)
        if status is not SubmitStatus.ACCEPTED or expired > 0:
            reason = order.reason or "refused by the book"
            self._emit(OrderEvent(OrderEventKind.EXPIRED, coid, symbol, taken, order_id, reason=reason,
                                  timestamp=self.wall()))
            return
        state.offset[coid] = taken
        state.order_ids[coid] = order_id  # the id it was accepted under, in every later event
        state.ahead[coid] = _ZERO

    def _cancel(self, symbol: str, client_order_ids: tuple[str, ...]) -> None:
        state = self._symbols.get(symbol)
        if state is None:
            return
        book = state.book
        for coid in client_order_ids:
            if book.owner(coid) != OWNER:
                continue
            order = book._withdraw(coid)
            if order is not None:
                state.ahead.pop(coid, None)
                self._emit(self._cancelled(state, symbol, order))

    def _cancelled(self, state: _Symbol, symbol: str, order: RestingOrder) -> OrderEvent:
        coid = order.client_order_id
        filled = order.filled_quantity + state.offset.pop(coid, _ZERO)
        order_id = state.order_ids.pop(coid, order.order_id)
        return OrderEvent(OrderEventKind.CANCELLED, coid, symbol, filled, order_id, None, order.reason,
                          timestamp=self.wall())

    def _arrival(self, symbol: str) -> float:
        """When a request for *symbol* sent now reaches the exchange: after a drawn delay, but never before one sent
        earlier (one connection delivers in order, so a cancel never overtakes the place it cancels)."""
        assert self._entry is not None
        state = self._symbol(symbol)
        when = max(trio.current_time() + self._entry.sample(state.rng), state.last_entry)
        state.last_entry = when
        return when

    def _emit(self, event: OrderEvent) -> None:
        self.emitted += 1
        if self._response is None:
            self._listeners.emit(event)
        else:
            state = self._symbol(event.symbol)
            when = max(trio.current_time() + self._response.sample(state.rng), state.last_response)
            state.last_response = when
            self.timeline.at(when, self._listeners.emit, event)
