"""Listener registries for plugin authors: what a sink (or feed) needs to deliver to the engine's markets.

:class:`OrderEventListeners` is the ``subscribe(symbol, prefix, listener)`` half of an
:class:`~mmframe.protocols.OrderSink`: call :meth:`~OrderEventListeners.emit` with every event and it reaches the
listeners of the event's symbol whose prefix the client order id starts with. A listener that raises is logged and
dropped; it never breaks the sink.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import attrs

from ._models import OrderEvent
from .protocols import Subscription

__all__ = ["OrderEventListeners"]

OrderListener = Callable[[OrderEvent], None]


@attrs.define(eq=False)
class _Entry:
    symbol: str
    prefix: str
    callback: OrderListener
    subscription: Subscription | None = None


class OrderEventListeners:
    """Listeners by symbol and client-id prefix. ``logger`` names who drops a raising listener."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._by_symbol: dict[str, list[_Entry]] = {}
        self._log = logger or logging.getLogger("mmframe.listeners")

    def subscribe(self, symbol: str, prefix: str, listener: OrderListener) -> Subscription:
        """Deliver the events of *symbol*'s orders whose client id starts with *prefix* to *listener*."""
        entry = _Entry(symbol, prefix, listener)
        listeners = self._by_symbol.setdefault(symbol, [])

        def remove() -> None:
            if entry in listeners:
                listeners.remove(entry)

        entry.subscription = Subscription(remove)
        listeners.append(entry)
        return entry.subscription

    def emit(self, event: OrderEvent) -> None:
        """Call every matching listener with *event*, synchronously, in subscription order."""
        listeners = self._by_symbol.get(event.symbol)
        if not listeners:
            return
        for entry in list(listeners):
            if not event.client_order_id.startswith(entry.prefix):
                continue
            if entry.subscription is not None and entry.subscription.closed:
                continue  # closed by an earlier listener of this event
            try:
                entry.callback(event)
            except Exception:
                self._log.exception(
                    "order listener %r (symbol %s, prefix %r) raised on %s of %s; dropping its subscription",
                    entry.callback,
                    entry.symbol,
                    entry.prefix,
                    event.kind,
                    event.client_order_id,
                )
                if entry.subscription is not None:
                    entry.subscription.close()
