"""The built-in ``sim`` feed: index prices without a network, for demos and tests.

Two modes:

* **random walk** (the default): every symbol starts at its configured price (100 if not listed) and moves by a
  log-normal step, ``price *= exp(volatility * gauss(0, 1))``, ``tick_rate`` times per second. With a ``seed`` the
  path of each symbol is reproducible and independent of the other symbols and of the order of subscriptions
  (each symbol has its own generator seeded from ``(seed, symbol)``).
* **replay** (``replay_file`` set): the ticks of a recorded NDJSON file — one object per line,
  ``{"symbol": "BTCUSDT", "price": "30000.5", "timestamp": 1700000000.25}`` with an optional ``"exchange"`` — are
  delivered at the recorded pace (timestamp differences divided by ``replay_speed``), each stamped with the
  current wall-clock time so staleness checks treat them as live. Malformed lines (bad JSON, missing fields, a
  price that is not a positive finite number) are skipped and counted with a warning; lines for symbols nobody
  subscribed are ignored. Symbols keep the file's shared timeline (a symbol whose first line is 5 s into the
  file ticks 5 s after it is subscribed). With ``replay_loop`` the recording starts again ``1 / tick_rate``
  seconds after its last tick; without it, a symbol subscribed anew after its replay ended replays from the start.
  The file is read once, when ``run`` starts; a file that cannot be read makes ``run`` fail.

With ``depth`` each tick is followed by a small synthetic :class:`~mmframe.DepthSnapshot` around the price.

One task, :meth:`SimFeed.run`'s, drives every subscribed symbol: it keeps each symbol's next deadline in a heap
and sleeps until the earliest (a new subscription wakes it). A symbol first subscribed after ``run`` started gets
its first tick at once and joins the heap; a symbol whose last listener left is dropped at its next deadline (a
random walk resumes where it stopped when the symbol is subscribed again). Each symbol's deadlines are its first
tick plus whole intervals (ticks do not drift however long the listeners take). Woken for one deadline, the task
also delivers the ticks due within a small slack after it (``COALESCE_FRACTION`` of the interval, at most
``COALESCE_MAX`` seconds): hundreds of symbols subscribed at scattered moments then cost one timer wake-up per
slack window instead of one per tick; a tick is never late for it, and at most that slack early. (Issue 15:
a task per symbol made 2,500 ``sleep_until`` a second at 500 symbols, half of the feed's CPU in trio's timer and
cancel-scope machinery.) Waiting is ``trio`` sleeping, so the feed runs on trio's ``MockClock`` in tests.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import math
import random
import time
import zlib
from collections.abc import Callable
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Any, ClassVar

import attrs
import trio

from mmframe._hookspecs import hookimpl
from mmframe._models import DepthSnapshot, PriceTick, to_decimal
from mmframe._validators import finite, not_empty, positive
from mmframe.feedtools import FeedHub, FeedSymbolStats, Listener
from mmframe.protocols import Subscription

__all__ = ["SimFeed", "SimFeedStatistics", "register_feeds"]

logger = logging.getLogger("mmframe.sim")

DEFAULT_START_PRICE = Decimal(100)
SIGNIFICANT_DIGITS = 8
DEPTH_LEVELS = 5
DEPTH_STEP = Decimal("0.0005")  # each synthetic depth level is 0.05 % further from the price
MAX_PRICE = Decimal("1e15")  # above this a start price or a recorded price is refused as absurd
#: Woken for a deadline, the feed also delivers the ticks due within this part of an interval after it ...
COALESCE_FRACTION = 0.02
#: ... but never more than this many seconds early.
COALESCE_MAX = 0.005

def round_significant(value: float, digits: int = SIGNIFICANT_DIGITS) -> Decimal:
    """An exact :class:`Decimal` of *value* rounded to *digits* significant digits, without trailing zeros.

    Built from a rounded string, so no binary-float artefact (``0.30000000000000004``) reaches the Decimal.
    """
    return _plain(Decimal(f"{value:.{digits - 1}e}"))


def _plain(value: Decimal) -> Decimal:
    """*value* without trailing zeros, and a large value as plain digits (``"1.2345679E+8"`` → ``"123456790"``)."""
    value = value.normalize()
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent > 0:
        value = Decimal(f"{value:f}")  # formatting is exact whatever the magnitude (quantize is not)
    return value


# ---------------------------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------------------------


def _to_prices(value: object) -> dict[str, Decimal]:
    if not isinstance(value, dict):
        raise ValueError(f"prices must be a mapping of symbol to price, got {type(value).__name__}")
    prices: dict[str, Decimal] = {}
    for symbol, price in value.items():
        if not isinstance(symbol, str) or not symbol:
            raise ValueError(f"prices: a symbol must be a non-empty string, got {symbol!r}")
        decimal = to_decimal(price, name=f"prices[{symbol!r}]")
        if not 0 < decimal < MAX_PRICE:
            raise ValueError(f"prices[{symbol!r}] must be positive and below {MAX_PRICE:f}, got {decimal}")
        prices[symbol] = decimal
    return prices


def _volatility(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not 0 <= value < 1:
        raise ValueError(f"{attribute.name} must be at least 0 and below 1, got {value!r}")


@attrs.frozen
class SimFeedStatistics:
    """A snapshot of a :class:`SimFeed`'s counters (see :meth:`SimFeed.statistics`)."""

    ticks_delivered: int
    depth_delivered: int
    listeners: int
    running_symbols: tuple[str, ...]
    skipped_lines: int
    listener_errors: int


@attrs.define
class _Walk:
    """One symbol's random-walk state: kept across subscriptions so a walk resumes where it stopped."""

    price: Decimal
    rng: random.Random

    def step(self, volatility: float) -> Decimal:
        moved = float(self.price) * math.exp(volatility * self.rng.gauss(0.0, 1.0))
        if 0 < moved < MAX_PRICE:  # also false for NaN and infinity
            candidate = round_significant(moved)
            if candidate > 0:
                self.price = candidate
        return self.price


@attrs.define(eq=False)
class _Slot:
    """One symbol in the feed's schedule: its next deadline and where its walk or replay stands."""

    symbol: str
    deadline: float
    walk: _Walk | None = None  # random walk: None until the first tick since the symbol joined
    series: tuple[_Recorded, ...] | None = None  # replay: None until the symbol's timeline started
    position: int = 0  # replay: the next record of series
    cycle_start: float = 0.0  # replay: when the current pass over the file started


@attrs.frozen
class _Recorded:
    """One good line of a replay file: when (seconds after the file's first tick), at what price, from where."""

    offset: float
    price: Decimal
    exchange: str


@attrs.frozen
class _Recording:
    by_symbol: dict[str, tuple[_Recorded, ...]]
    span: float  # seconds between the file's first and last tick
    skipped: int


# ---------------------------------------------------------------------------------------------------------------
# The feed
# ---------------------------------------------------------------------------------------------------------------


class SimFeed:
    """A simulated :class:`~mmframe.protocols.ExchangeFeed`: a seeded random walk, or the replay of a file.

    ``SimFeed(SimFeed.Config(seed=7))``; ``await nursery.start(feed.run)``; ``feed.subscribe("BTCUSDT", listener)``.
    """

    name: ClassVar[str] = "sim"

    @attrs.frozen
    class Config:
        """The ``sim`` feed's options.

        :param prices: start price per symbol; symbols not listed start at 100.
        :param volatility: standard deviation of the log return of one tick (0 ≤ volatility < 1).
        :param tick_rate: ticks per second per symbol (> 0).
        :param seed: makes every symbol's path reproducible; ``None`` seeds from the OS.
        :param replay_file: path of an NDJSON file of ticks to replay instead of the random walk.
        :param replay_speed: replay pace multiplier: 2.0 replays twice as fast as recorded (> 0).
        :param replay_loop: start the recording again after its last tick.
        :param depth: also deliver a small synthetic depth snapshot after every tick.
        :param exchange: the exchange name put in ticks (a replayed line's own ``"exchange"`` wins).
        :param spread_phases: a symbol's ticks keep a phase of their own within the tick interval, fixed by its name
            (its first tick comes up to one interval after it is subscribed), instead of starting the moment it is
            subscribed: symbols subscribed together (hundreds of markets started at once) then do not tick in
            lockstep, as a real exchange's symbols do not. Off by default (the first tick at once).
        """

        prices: dict[str, Decimal] = attrs.field(factory=dict, converter=_to_prices)
        volatility: float = attrs.field(default=0.0005, converter=float, validator=[finite, _volatility])
        tick_rate: float = attrs.field(default=2.0, converter=float, validator=[finite, positive])
        seed: int | None = None
        replay_file: str | None = attrs.field(default=None, validator=not_empty)
        replay_speed: float = attrs.field(default=1.0, converter=float, validator=[finite, positive])
        replay_loop: bool = False
        depth: bool = False
        exchange: str = attrs.field(default="sim", validator=not_empty)
        spread_phases: bool = False

    def __init__(self, config: Config | None = None) -> None:
        self.config = config if config is not None else SimFeed.Config()
        self.hub = FeedHub("sim", logger=logger)
        # While run() runs: the schedule, a heap of (deadline, order, slot) with one entry per slot in _slots.
        self._heap: list[tuple[float, int, _Slot]] | None = None
        self._slots: dict[str, _Slot] = {}  # the symbols being driven
        self._order = itertools.count()  # ties in the heap go first come, first served
        self._wake = trio.Event()  # set when a symbol joins the schedule
        self._walks: dict[str, _Walk] = {}
        self._recording: _Recording | None = None
        self._sequence: dict[str, int] = {}
        self._ticks_delivered = 0
        self._depth_delivered = 0

    def __repr__(self) -> str:
        return f"<SimFeed {self.config!r}>"

    # -- the ExchangeFeed protocol ------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Produce ticks for every subscribed symbol until cancelled.

        Ready (``task_status.started()``) once the replay file, if any, is read. A replay file that cannot be
        read is an error raised from here; malformed lines in it are not (they are skipped and counted).
        """
        if self._heap is not None:
            raise RuntimeError("this SimFeed is already running")
        if self.config.replay_file is not None:
            self._recording = _read_recording(self.config.replay_file, self.config.exchange)
        try:
            self._heap = []
            self._wake = trio.Event()
            self.hub.connected()
            for symbol in self.hub.symbols():
                self._schedule(symbol)
            task_status.started()
            await self._drive(self._heap)
        finally:
            self._heap = None
            self._slots.clear()
            self.hub.disconnected(reconnecting=False)

    def subscribe(self, symbol: str, listener: Listener) -> Subscription:
        """Deliver every tick (and depth snapshot) of *symbol* to *listener* until the subscription is closed.

        A listener that raises is logged and removed; the feed and the other listeners carry on.
        """
        if not symbol:
            raise ValueError("symbol must not be empty")
        subscription = self.hub.subscribe(symbol, listener)
        self._schedule(symbol)
        return subscription

    # -- introspection ------------------------------------------------------------------------------------------

    def symbol_statistics(self, symbol: str) -> FeedSymbolStats:
        """The per-symbol figures every feed reports (last price, update age, messages, ...)."""
        return self.hub.statistics(symbol)

    def statistics(self) -> SimFeedStatistics:
        return SimFeedStatistics(
            ticks_delivered=self._ticks_delivered,
            depth_delivered=self._depth_delivered,
            listeners=self.hub.listener_count(),
            running_symbols=tuple(sorted(self._slots)),
            skipped_lines=self._recording.skipped if self._recording is not None else 0,
            listener_errors=self.hub.listener_errors,
        )

    # -- internals ----------------------------------------------------------------------------------------------

    def _schedule(self, symbol: str) -> None:
        """Put *symbol* in the schedule, its first tick due now (nothing if it is there already, or not running)."""
        heap = self._heap
        if heap is None or symbol in self._slots:
            return
        now = trio.current_time()
        if self.config.spread_phases and self._recording is None:
            # The symbol's own phase: the same fraction of the interval for a name, whenever it is subscribed.
            now += zlib.crc32(symbol.encode()) / 2**32 / self.config.tick_rate
        slot = self._slots[symbol] = _Slot(symbol, now)
        heapq.heappush(heap, (slot.deadline, next(self._order), slot))
        self._wake.set()

    async def _drive(self, heap: list[tuple[float, int, _Slot]]) -> None:
        """The one task behind every symbol: sleep until the earliest deadline (or a new symbol), then deliver what
        is due. The slots due are taken out first and put back after, so a symbol that fell behind catches up one
        tick per round, with a checkpoint between rounds (as a task per symbol did)."""
        slack = min(COALESCE_FRACTION / self.config.tick_rate, COALESCE_MAX)
        due: list[_Slot] = []
        while True:
            if heap:
                with trio.move_on_at(heap[0][0]):
                    await self._wake.wait()
            else:
                await self._wake.wait()
            if self._wake.is_set():
                self._wake = trio.Event()
            horizon = trio.current_time() + slack
            while heap and heap[0][0] <= horizon:
                due.append(heapq.heappop(heap)[2])
            for slot in due:
                deadline = self._tick(slot)
                if deadline is None:
                    del self._slots[slot.symbol]
                else:
                    slot.deadline = deadline
                    heapq.heappush(heap, (deadline, next(self._order), slot))
            due.clear()

    def _tick(self, slot: _Slot) -> float | None:
        """*slot*'s due work; its next deadline, ``None`` when it leaves the schedule."""
        if self._recording is not None:
            return self._replay_tick(slot, self._recording)
        if not self.hub.listening(slot.symbol):
            return None  # unsubscribed: the walk stays at the last delivered price
        walk = slot.walk
        if walk is None:
            walk = self._walks.get(slot.symbol)
            if walk is None:
                walk = self._walks[slot.symbol] = _Walk(
                    price=self.config.prices.get(slot.symbol, DEFAULT_START_PRICE),
                    rng=random.Random(None if self.config.seed is None else f"{self.config.seed}:{slot.symbol}"),
                )
                price = walk.price  # the first tick is the start price
            else:
                price = walk.step(self.config.volatility)  # resuming: move on from the last delivered price
            slot.walk = walk
        else:
            price = walk.step(self.config.volatility)
        self._publish(slot.symbol, price, self.config.exchange)
        return slot.deadline + 1.0 / self.config.tick_rate

    def _replay_tick(self, slot: _Slot, recording: _Recording) -> float | None:
        speed = self.config.replay_speed
        series = slot.series
        if series is None:  # just subscribed: the file's timeline starts now
            series = slot.series = recording.by_symbol.get(slot.symbol, ())
            if not series:
                logger.warning("replay file %s has no ticks for %s", self.config.replay_file, slot.symbol)
                return None
            slot.cycle_start = slot.deadline
            return slot.cycle_start + series[0].offset / speed
        if not self.hub.listening(slot.symbol):
            return None
        record = series[slot.position]
        self._publish(slot.symbol, record.price, record.exchange)
        slot.position += 1
        if slot.position == len(series):
            if not self.config.replay_loop:
                logger.info("replay of %s for %s finished", self.config.replay_file, slot.symbol)
                return None
            slot.position = 0
            slot.cycle_start += recording.span / speed + 1.0 / self.config.tick_rate
        return slot.cycle_start + series[slot.position].offset / speed

    def _publish(self, symbol: str, price: Decimal, exchange: str) -> None:
        now = time.time()
        self.hub.deliver(PriceTick(exchange=exchange, symbol=symbol, price=price, timestamp=now))
        self._ticks_delivered += 1
        if self.config.depth:
            sequence = self._sequence[symbol] = self._sequence.get(symbol, 0) + 1
            self.hub.deliver(_synthetic_depth(exchange, symbol, price, sequence, now))
            self._depth_delivered += 1


def _synthetic_depth(exchange: str, symbol: str, price: Decimal, sequence: int, timestamp: float) -> DepthSnapshot:
    """Five levels a side, 0.05 % apart, around *price* (quantities 1, 2, 3, ... away from the price)."""
    bids = []
    asks = []
    for level in range(1, DEPTH_LEVELS + 1):
        distance = DEPTH_STEP * level
        quantity = Decimal(level)
        bids.append((_round_decimal(price * (1 - distance)), quantity))
        asks.append((_round_decimal(price * (1 + distance)), quantity))
    return DepthSnapshot(exchange=exchange, symbol=symbol, bids=bids, asks=asks, sequence=sequence, timestamp=timestamp)


_SIGNIFICANT = Context(prec=SIGNIFICANT_DIGITS, rounding=ROUND_HALF_EVEN)


def _round_decimal(value: Decimal) -> Decimal:
    """*value* to the feed's significant digits, in exact decimal arithmetic."""
    return _plain(_SIGNIFICANT.plus(value))


# ---------------------------------------------------------------------------------------------------------------
# Replay files
# ---------------------------------------------------------------------------------------------------------------


def _read_recording(path: str, default_exchange: str) -> _Recording:
    # Read once, synchronously, when the feed starts: recordings for demos and tests are small, and a plain read
    # needs no worker thread (trio.Path would use one, and under a MockClock the clock could jump meanwhile).
    with open(path, encoding="utf-8") as file:
        text = file.read()
    return _parse_recording(text, default_exchange, source=path)


def _parse_recording(text: str, default_exchange: str, *, source: str) -> _Recording:
    rows: list[tuple[str, float, Decimal, str]] = []
    skipped = 0
    first_problem = ""
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(_parse_line(line, default_exchange))
        except (ValueError, OverflowError) as exc:
            skipped += 1
            if not first_problem:
                first_problem = f"line {number}: {exc}"
    if skipped:
        logger.warning(
            "replay file %s: skipped %d malformed line%s (first: %s)",
            source,
            skipped,
            "" if skipped == 1 else "s",
            first_problem,
        )
    if not rows:
        return _Recording(by_symbol={}, span=0.0, skipped=skipped)
    start = rows[0][1]
    by_symbol: dict[str, list[_Recorded]] = {}
    offset = 0.0
    for symbol, timestamp, price, exchange in rows:
        offset = max(offset, timestamp - start)  # a timestamp going backwards is delivered without waiting
        by_symbol.setdefault(symbol, []).append(_Recorded(offset=offset, price=price, exchange=exchange))
    return _Recording(
        by_symbol={symbol: tuple(series) for symbol, series in by_symbol.items()}, span=offset, skipped=skipped
    )


def _parse_line(line: str, default_exchange: str) -> tuple[str, float, Decimal, str]:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    symbol = data.get("symbol")
    if not isinstance(symbol, str) or not symbol:
        raise ValueError("symbol missing or not a string")
    raw_price = data.get("price")
    if isinstance(raw_price, float) and not math.isfinite(raw_price):
        raise ValueError(f"price is not finite: {raw_price!r}")
    price = to_decimal(raw_price, name="price")
    if not 0 < price < MAX_PRICE:
        raise ValueError(f"price must be positive and below {MAX_PRICE:f}, got {price}")
    timestamp = data.get("timestamp")
    if isinstance(timestamp, bool) or not isinstance(timestamp, int | float) or not math.isfinite(timestamp):
        raise ValueError(f"timestamp missing or not a number: {timestamp!r}")
    exchange = data.get("exchange", default_exchange)
    if not isinstance(exchange, str) or not exchange:
        raise ValueError(f"exchange is not a string: {exchange!r}")
    return symbol, float(timestamp), price, exchange


# ---------------------------------------------------------------------------------------------------------------
# Registration
# ---------------------------------------------------------------------------------------------------------------


@hookimpl
def register_feeds(register: Callable[..., None]) -> None:
    register(SimFeed)
