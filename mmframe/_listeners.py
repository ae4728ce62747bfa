"""The one listener registry: callbacks by symbol (and, for order events, by client-id prefix), delivered to
synchronously in subscription order. A listener that raises is logged and dropped; it never breaks the component
that delivers (a sink, a feed's connection).

:class:`Listeners` is the registry; :class:`OrderEventListeners` is it for order events, the
``subscribe(symbol, prefix, listener)`` half of an :class:`~mmframe.OrderSink` (public in
:mod:`mmframe.sinktools`); :class:`mmframe.feedtools.FeedHub` keeps a feed's market-data listeners in one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Generic, TypeVar

from ._models import OrderEvent
from .protocols import Subscription

__all__ = ["Listeners", "OrderEventListeners", "OrderListener"]

T = TypeVar("T")

OrderListener = Callable[[OrderEvent], None]


class _Entry(Generic[T]):
    __slots__ = ("callback", "prefix", "subscription", "symbol")

    def __init__(self, symbol: str, prefix: str, callback: Callable[[T], None]) -> None:
        self.symbol = symbol
        self.prefix = prefix
        self.callback = callback
        self.subscription: Subscription | None = None


class Listeners(Generic[T]):
    """Listeners by symbol, each with a key prefix (``""``: every item of the symbol).

    :param logger: where a raising listener is logged before it is dropped.
    :param on_change: called with the symbol when it gains its first listener or loses its last one (a feed
        subscribes and unsubscribes upstream then).
    """

    def __init__(self, logger: logging.Logger, on_change: Callable[[str], None] | None = None) -> None:
        self._by_symbol: dict[str, list[_Entry[T]]] = {}
        self._log = logger
        self._on_change = on_change
        #: Listeners dropped because they raised.
        self.errors = 0

    def subscribe(self, symbol: str, listener: Callable[[T], None], prefix: str = "") -> Subscription:
        """Deliver the items of *symbol* whose key starts with *prefix* to *listener* until the returned
        subscription is closed."""
        entry: _Entry[T] = _Entry(symbol, prefix, listener)
        entries = self._by_symbol.setdefault(symbol, [])
        first = not entries
        entries.append(entry)
        entry.subscription = Subscription(lambda: self._remove(entry))
        if first and self._on_change is not None:
            self._on_change(symbol)
        return entry.subscription

    def _remove(self, entry: _Entry[T]) -> None:
        entries = self._by_symbol.get(entry.symbol)
        if entries is None or entry not in entries:
            return
        entries.remove(entry)
        if not entries:
            del self._by_symbol[entry.symbol]
            if self._on_change is not None:
                self._on_change(entry.symbol)

    def deliver(self, symbol: str, item: T, key: str = "", *, describe: Callable[[T], str] | None = None) -> int:
        """Call every listener of *symbol* whose prefix *key* starts with, in subscription order; returns how many
        were called. One that raises is logged (with ``describe(item)``, if given) and dropped."""
        entries = self._by_symbol.get(symbol)
        if not entries:
            return 0
        called = 0
        for entry in tuple(entries):
            if entry.prefix and not key.startswith(entry.prefix):
                continue
            if entry.subscription is not None and entry.subscription.closed:
                continue  # closed by an earlier listener of this item
            called += 1
            try:
                entry.callback(item)
            except Exception:
                self.errors += 1
                self._log.exception(
                    "a listener of %s%s raised%s; dropping its subscription: %r", symbol,
                    f" (prefix {entry.prefix!r})" if entry.prefix else "",
                    f" on {describe(item)}" if describe is not None else "", entry.callback,
                )
                if entry.subscription is not None:
                    entry.subscription.close()
        return called

    def symbols(self) -> frozenset[str]:
        """The symbols that have at least one listener now."""
        return frozenset(self._by_symbol)

    def listening(self, symbol: str) -> bool:
        return symbol in self._by_symbol

    def count(self) -> int:
        """How many listeners there are, over every symbol."""
        return sum(len(entries) for entries in self._by_symbol.values())


class OrderEventListeners:
    """The listeners of order events, by symbol and client-id prefix: ``subscribe(symbol, prefix, listener)`` as an
    :class:`~mmframe.OrderSink` offers it, and :meth:`emit` for every event. ``logger`` names who drops a raising
    listener."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._listeners: Listeners[OrderEvent] = Listeners(logger or logging.getLogger("mmframe.listeners"))

    def subscribe(self, symbol: str, prefix: str, listener: OrderListener) -> Subscription:
        """Deliver the events of *symbol*'s orders whose client id starts with *prefix* to *listener*."""
        return self._listeners.subscribe(symbol, listener, prefix)

    def emit(self, event: OrderEvent) -> None:
        """Call every matching listener with *event*, synchronously, in subscription order."""
        self._listeners.deliver(event.symbol, event, event.client_order_id, describe=_event_text)


def _event_text(event: OrderEvent) -> str:
    return f"{event.kind} of {event.client_order_id}"
