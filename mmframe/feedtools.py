"""Building blocks for feed plugins: listeners and per-symbol statistics, exact parsing, reconnect backoff.

A network feed (``binance``, ``okex``, the ``redis`` bus) is the same shape every time: markets subscribe to
symbols, a connection task turns the exchange's messages into :class:`~mmframe.PriceTick` and
:class:`~mmframe.DepthSnapshot` items, and when the connection breaks it reconnects with backoff. The parts
that do not depend on the exchange live here, so every feed counts and reports the same way:

* :class:`FeedHub` keeps the listeners of each symbol, delivers items to them (a listener that raises is logged
  and removed; the feed carries on), counts messages, rejected messages and reconnects, and answers
  :meth:`FeedHub.statistics` — which a feed exposes as ``symbol_statistics(symbol)``, the optional part of the
  :class:`~mmframe.protocols.ExchangeFeed` protocol that the market status and Prometheus read.
* :func:`parse_price`, :func:`parse_quantity` and :func:`parse_levels` turn the strings (or JSON numbers read as
  :class:`~decimal.Decimal`) of a message into exact decimals, raising :class:`BadMessage` for anything else.
* :class:`Backoff`: exponential delays with jitter for reconnecting.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Iterable
from decimal import Decimal, InvalidOperation
from typing import Any

import attrs
import trio

from ._listeners import Listeners
from ._models import DepthSnapshot, MarketData, PriceTick
from ._symbols import QUOTE_ASSETS as QUOTE_ASSETS
from ._symbols import compact_symbol as compact_symbol
from ._symbols import split_symbol as split_symbol
from .protocols import Subscription

__all__ = [
    "MAX_PRICE",
    "QUOTE_ASSETS",
    "Backoff",
    "BadMessage",
    "FeedHub",
    "FeedSymbolStats",
    "Listener",
    "compact_symbol",
    "depth_snapshot",
    "finite_timestamp",
    "parse_levels",
    "parse_price",
    "parse_quantity",
    "split_symbol",
]

MAX_PRICE = Decimal("1e15")  # a price at or above this is refused as absurd
MAX_LEVELS = 1000  # a depth message with more levels a side is refused

#: The type of a feed's listeners (what ``subscribe`` takes): called with every tick and snapshot of the symbol.
Listener = Callable[[MarketData], None]


class BadMessage(ValueError):
    """A message from an exchange or the bus that cannot be used: it is counted as rejected and skipped."""


# ---------------------------------------------------------------------------------------------------------------
# Exact parsing
# ---------------------------------------------------------------------------------------------------------------


def _decimal(value: object, name: str) -> Decimal:
    if isinstance(value, bool | float):
        # A float has already lost the exact digits; feeds read JSON with parse_float=Decimal.
        raise BadMessage(f"{name} must be a decimal string, got {type(value).__name__} {value!r}")
    if isinstance(value, str | int | Decimal):
        try:
            result = Decimal(value.strip() if isinstance(value, str) else value)
        except (InvalidOperation, ValueError):
            raise BadMessage(f"{name} is not a number: {value!r}") from None
        if not result.is_finite():
            raise BadMessage(f"{name} is not finite: {value!r}")
        return result
    raise BadMessage(f"{name} must be a decimal string, got {type(value).__name__}")


def parse_price(value: object, name: str = "price") -> Decimal:
    """An exact price from a message: a decimal string (or int, or a JSON number read as Decimal), positive,
    finite, below :data:`MAX_PRICE`. Anything else raises :class:`BadMessage`."""
    price = _decimal(value, name)
    if not 0 < price < MAX_PRICE:
        raise BadMessage(f"{name} must be positive and below {MAX_PRICE:f}, got {value!r}")
    return price


def parse_quantity(value: object, name: str = "quantity") -> Decimal:
    """An exact quantity: like :func:`parse_price` but zero is allowed (a level being removed)."""
    quantity = _decimal(value, name)
    if not 0 <= quantity < MAX_PRICE:
        raise BadMessage(f"{name} must be at least 0 and below {MAX_PRICE:f}, got {value!r}")
    return quantity


def parse_levels(value: object, name: str) -> list[tuple[Decimal, Decimal]]:
    """``[[price, qty], ...]`` (extra items in a level, as OKX sends, are ignored) → exact ``(price, qty)`` pairs."""
    if not isinstance(value, list):
        raise BadMessage(f"{name} must be a list of [price, quantity] levels, got {type(value).__name__}")
    if len(value) > MAX_LEVELS:
        raise BadMessage(f"{name} has {len(value)} levels, more than {MAX_LEVELS}")
    levels = []
    for i, level in enumerate(value):
        if not isinstance(level, list | tuple) or len(level) < 2:
            raise BadMessage(f"{name}[{i}] must be a [price, quantity] pair, got {level!r}")
        levels.append((parse_price(level[0], f"{name}[{i}] price"), parse_quantity(level[1], f"{name}[{i}] quantity")))
    return levels


# ---------------------------------------------------------------------------------------------------------------
# Backoff
# ---------------------------------------------------------------------------------------------------------------


@attrs.define
class Backoff:
    """Exponential reconnect delays with jitter: ``initial * factor ** n``, capped at ``maximum``, each drawn
    uniformly from ``[delay * (1 - jitter), delay]`` so many clients do not reconnect in step.

    :meth:`reset` after a connection has proven healthy (delivered data), so the next failure starts small again.
    """

    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0
    jitter: float = 0.5
    rng: random.Random = attrs.field(factory=random.Random, repr=False)
    attempts: int = 0

    def __attrs_post_init__(self) -> None:
        if not (0 < self.initial <= self.maximum and self.factor >= 1 and 0 <= self.jitter <= 1):
            raise ValueError(f"invalid backoff: {self!r}")

    def next(self) -> float:
        """The delay before the next attempt (and count the attempt)."""
        delay = min(self.maximum, self.initial * self.factor ** min(self.attempts, 64))
        self.attempts += 1
        return delay * (1 - self.jitter * self.rng.random())

    def reset(self) -> None:
        self.attempts = 0


# ---------------------------------------------------------------------------------------------------------------
# The hub
# ---------------------------------------------------------------------------------------------------------------


@attrs.frozen
class FeedSymbolStats:
    """What a feed reports about one symbol (see :meth:`FeedHub.statistics`).

    :param last_price: the price of the last tick delivered for the symbol.
    :param last_update_age: seconds since the last item (tick or depth) was delivered for it.
    :param messages: items delivered for the symbol.
    :param rejected: messages for the symbol that were counted and skipped (bad price, wrong types, ...).
    :param unattributed_rejected: messages on the feed's connection that named no symbol it could tell
        (non-JSON, truncated), counted once for the whole feed.
    :param reconnects: times the feed's connection was lost while up, since the feed started (an outage counts
        once, however many attempts reconnecting takes).
    :param connected: whether the feed's connection is up now.
    """

    feed: str
    symbol: str
    last_price: Decimal | None = None
    last_update_age: float | None = None
    messages: int = 0
    rejected: int = 0
    unattributed_rejected: int = 0
    reconnects: int = 0
    connected: bool = False


@attrs.define
class _SymbolCounters:
    last_price: Decimal | None = None
    last_update: float | None = None
    messages: int = 0
    rejected: int = 0


class FeedHub:
    """Listeners and statistics of one feed instance.

    ``hub.subscribe(symbol, listener)`` is the feed's ``subscribe``; the connection task calls :meth:`deliver`
    for every good item, :meth:`reject` for every message it skips, :meth:`connected` / :meth:`disconnected`
    as its connection comes and goes, and waits on :meth:`wait_changed` to learn that the set of subscribed
    :meth:`symbols` changed (to send the exchange a subscribe or unsubscribe).

    :param name: the feed's name, for logs and statistics.
    :param clock: the clock of update ages (default ``trio.current_time``, so ages follow trio's MockClock).
    :param logger: where rejects and failing listeners are logged (default ``mmframe.feed.<name>``).
    :param max_clock_skew: a tick stamped more than this many seconds in the future (by the wall clock) is rejected
        and counted, not delivered: a future-dated tick must never become a market's "last good tick".
    """

    #: Rejections are logged at WARNING at most once per this many seconds (with a count of the ones in between).
    REJECT_LOG_INTERVAL = 10.0

    def __init__(
        self,
        name: str,
        *,
        clock: Callable[[], float] = trio.current_time,
        logger: logging.Logger | None = None,
        max_clock_skew: float = 2.0,
    ) -> None:
        self.name = name
        self.log = logger if logger is not None else logging.getLogger(f"mmframe.feed.{name}")
        self._clock = clock
        self._listeners: Listeners[MarketData] = Listeners(self.log, on_change=lambda symbol: self._signal())
        self._counters: dict[str, _SymbolCounters] = {}
        self._changed = trio.Event()
        self.unattributed_rejected = 0
        self.reconnects = 0
        self.is_connected = False
        self.max_clock_skew = max_clock_skew
        self._reject_logged_at: float | None = None
        self._reject_suppressed = 0

    # -- subscriptions ------------------------------------------------------------------------------------------

    def subscribe(self, symbol: str, listener: Listener) -> Subscription:
        """Deliver every item of *symbol* to *listener* until the returned subscription is closed."""
        if not isinstance(symbol, str) or not symbol:
            raise ValueError("symbol must be a non-empty string")
        self._counters.setdefault(symbol, _SymbolCounters())
        return self._listeners.subscribe(symbol, listener)

    def _signal(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def symbols(self) -> frozenset[str]:
        """The symbols that have at least one listener now."""
        return self._listeners.symbols()

    async def wait_changed(self) -> None:
        """Return once a symbol gains its first listener or loses its last one."""
        await self._changed.wait()

    def listening(self, symbol: str) -> bool:
        return self._listeners.listening(symbol)

    def listener_count(self) -> int:
        return self._listeners.count()

    @property
    def listener_errors(self) -> int:
        """Listeners dropped because they raised."""
        return self._listeners.errors

    # -- the connection task's side -----------------------------------------------------------------------------

    def deliver(self, item: MarketData) -> None:
        """Count *item* and hand it to its symbol's listeners (an item for a symbol nobody follows is dropped)."""
        symbol = item.symbol
        if isinstance(item, PriceTick) and item.timestamp - time.time() > self.max_clock_skew:
            self.reject(f"price {item.price} stamped {item.timestamp - time.time():.1f}s in the future "
                        f"(max_clock_skew {self.max_clock_skew}s)", symbol)
            return
        counters = self._counters.get(symbol)
        if counters is None:
            counters = self._counters[symbol] = _SymbolCounters()
        counters.messages += 1
        counters.last_update = self._clock()
        if isinstance(item, PriceTick):
            counters.last_price = item.price
        self._listeners.deliver(symbol, item)

    def reject(self, reason: str, symbol: str | None = None, *, raw: object = None, level: int | None = None) -> None:
        """Count a message that was skipped, and log why: at *level* if given (an exchange's error reply), else at
        WARNING at most once per :attr:`REJECT_LOG_INTERVAL` seconds, saying how many were not logged in between
        (a stream of garbage must not flood the log, and must not go unseen either)."""
        if symbol is not None and symbol in self._counters:
            self._counters[symbol].rejected += 1
        else:
            self.unattributed_rejected += 1
        suppressed = ""
        if level is None:
            now = time.monotonic()
            if self._reject_logged_at is not None and now - self._reject_logged_at < self.REJECT_LOG_INTERVAL:
                self._reject_suppressed += 1
                return
            self._reject_logged_at = now
            if self._reject_suppressed:
                suppressed = f" ({self._reject_suppressed} more rejected since the last report)"
                self._reject_suppressed = 0
            level = logging.WARNING
        snippet = "" if raw is None else f": {_snippet(raw)}"
        self.log.log(level, "%s feed: rejected a message%s (%s)%s%s", self.name,
                     f" for {symbol}" if symbol else "", reason, snippet, suppressed)

    def connected(self) -> None:
        """The connection is up (and subscribed)."""
        self.is_connected = True

    def disconnected(self, *, reconnecting: bool = True) -> None:
        """The connection went down; with *reconnecting*, count a reconnect (pass ``reconnecting=self.is_connected``
        from a retry loop, so a failed attempt to connect again does not count as another outage)."""
        self.is_connected = False
        if reconnecting:
            self.reconnects += 1

    # -- reporting ----------------------------------------------------------------------------------------------

    def statistics(self, symbol: str) -> FeedSymbolStats:
        counters = self._counters.get(symbol, _SymbolCounters())
        age = None if counters.last_update is None else max(0.0, self._clock() - counters.last_update)
        return FeedSymbolStats(
            feed=self.name,
            symbol=symbol,
            last_price=counters.last_price,
            last_update_age=age,
            messages=counters.messages,
            rejected=counters.rejected,
            unattributed_rejected=self.unattributed_rejected,
            reconnects=self.reconnects,
            connected=self.is_connected,
        )

    def totals(self) -> dict[str, int]:
        """Messages and rejects over every symbol, for logs and the publisher's report."""
        return {
            "messages": sum(c.messages for c in self._counters.values()),
            "rejected": sum(c.rejected for c in self._counters.values()) + self.unattributed_rejected,
            "reconnects": self.reconnects,
        }


def _snippet(raw: object, limit: int = 120) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes | bytearray) else str(raw)
    return text if len(text) <= limit else text[:limit] + "…"


def depth_snapshot(
    exchange: str, symbol: str, bids: Iterable[tuple[Decimal, Decimal]], asks: Iterable[tuple[Decimal, Decimal]],
    *, sequence: int = 0, timestamp: float | None = None,
) -> DepthSnapshot:
    """A :class:`DepthSnapshot` with levels sorted best first and empty levels dropped; a crossed book (best bid
    at or above best ask) raises :class:`BadMessage`."""
    bid_levels = sorted(((p, q) for p, q in bids if q > 0), key=lambda level: level[0], reverse=True)
    ask_levels = sorted(((p, q) for p, q in asks if q > 0), key=lambda level: level[0])
    if bid_levels and ask_levels and bid_levels[0][0] >= ask_levels[0][0]:
        raise BadMessage(f"crossed book: best bid {bid_levels[0][0]} >= best ask {ask_levels[0][0]}")
    return DepthSnapshot(
        exchange=exchange, symbol=symbol, bids=bid_levels, asks=ask_levels, sequence=sequence,
        timestamp=time.time() if timestamp is None else timestamp,
    )


def finite_timestamp(value: Any, name: str = "timestamp") -> float:
    """A message's timestamp in seconds: a finite non-negative number (milliseconds above 1e11 are converted)."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise BadMessage(f"{name} must be a number, got {type(value).__name__}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise BadMessage(f"{name} must be finite and not negative, got {value!r}")
    return seconds / 1000.0 if seconds > 1e11 else seconds
