"""Building blocks for order sinks: delivering order events to the engine's markets, and timing requests.

- :class:`OrderEventListeners` is the ``subscribe(symbol, prefix, listener)`` half of an
  :class:`~mmframe.OrderSink`: call its ``emit`` with every event and it reaches the listeners of the event's symbol
  whose prefix the client order id starts with.
- :class:`LatencyHistogram` counts durations in fixed Prometheus-style buckets; a sink that reports request latency
  (:class:`~mmframe.protocols.ReportsRequestLatency`) returns one.
"""

from __future__ import annotations

from ._latency import LatencyHistogram as LatencyHistogram
from ._listeners import OrderEventListeners as OrderEventListeners
from ._listeners import OrderListener as OrderListener

__all__ = ["LatencyHistogram", "OrderEventListeners", "OrderListener"]
