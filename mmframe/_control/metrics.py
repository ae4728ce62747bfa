"""Prometheus metrics, read from the markets' statuses at scrape time (nothing is counted twice on the hot path).

Per market (labels ``market`` = the id like ``879_1``, ``symbol``, ``market_type``; in a cluster also ``instance``, the
member id, and only the markets this instance owns):

- ``strategy_orders_total`` (the seed's name): orders handed to the sink
- ``strategy_active_orders`` (the seed's name): live orders (pending, resting or being cancelled)
- ``mmframe_orders_cancelled_total``, ``mmframe_orders_rejected_total`` (by the sink),
  ``mmframe_orders_vetoed_total`` (by the risk gate)
- ``mmframe_orders_amended_total`` (amends sent: one message each), ``mmframe_amends_rejected_total`` (by the
  sink), and the message budget's ``mmframe_messages_held`` (what its last step left for later) and
  ``mmframe_messages_behind_seconds`` (how long it has been behind)
- ``mmframe_fills_total``, ``mmframe_volume_total`` (base asset)
- ``mmframe_inventory`` (base asset), ``mmframe_pnl`` (quote asset, marked at the index)
- ``mmframe_quote_latency_seconds`` (histogram: index tick arrival → orders handed to the sink)
- ``mmframe_ticks_total``, ``mmframe_ticks_rejected_total``, ``mmframe_feed_staleness_seconds``, and
  ``mmframe_ticks_rejected_by_reason_total`` (extra label ``reason``: ``invalid``, ``future``, ``older``, ``stale``,
  ``jump``, ``disagrees``; see :mod:`mmframe._engine.index`)
- the periodic reconciliation against the sink: ``mmframe_reconcile_cancelled_total``,
  ``mmframe_reconcile_gone_total``, ``mmframe_cancel_retries_total``, ``mmframe_reconcile_errors_total``, and
  ``mmframe_orders_cancelling`` (live orders whose cancel is not confirmed yet)
- per market, what its feed reports for its index symbol (extra label ``feed``): ``mmframe_feed_messages_total``,
  ``mmframe_feed_rejected_total`` (messages skipped as bad), ``mmframe_feed_reconnects_total``,
  ``mmframe_feed_last_price``, ``mmframe_feed_update_age_seconds``, ``mmframe_feed_connected``
- for the order sink (label ``sink``): ``mmframe_sink_degraded`` (1 while markets hold their orders because the
  sink cannot take them), ``mmframe_sink_circuit_open`` (1 while the match-engine sink's circuit breaker is open),
  ``mmframe_sink_request_seconds`` (histogram of HTTP requests to the engine, from a sink that measures them), and
  ``mmframe_sink_operations_total`` (label ``kind``: the sink's own counters, e.g. requests, retries, failures,
  rate_limited, breaker_opened)
- ``mmframe_strategy_status`` (extra label ``key``): every number in the strategy's own ``status()`` (a grid's
  ``round_trips``, ``held_quantity``, ``realized_pnl``, ...); booleans and text are left out
- ``mmframe_market_state`` (1 for the market's current state: running, stopped, failed, halted, ...)
- ``mmframe_markets`` and ``mmframe_up`` for the service.
- the audit trail (no labels; see :mod:`mmframe._service.audit`): ``mmframe_audit_pending``,
  ``mmframe_audit_oldest_pending_seconds``, ``mmframe_audit_received_total`` (label ``kind``: ``order_event``,
  ``fill``), ``mmframe_audit_written_total``,
  ``mmframe_audit_dropped_total``, ``mmframe_audit_write_errors_total``, ``mmframe_audit_holding`` (1 while new orders
  are held because the store is behind), ``mmframe_audit_holds_total`` (times the backlog reached its high-water
  mark) and ``mmframe_audit_held_orders_total`` (orders held).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from decimal import Decimal
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .._engine.index import REJECT_REASONS
from .._engine.spec import MarketState
from .._latency import LatencyHistogram
from ..protocols import (
    Named,
    ReportsCircuit,
    ReportsDegraded,
    ReportsRequestLatency,
    ReportsSinkStatistics,
)

if TYPE_CHECKING:
    from .._service import Service

__all__ = ["METRIC_NAMES", "make_registry", "render_metrics", "sink_metrics"]

LABELS = ["market", "symbol", "market_type"]
STATES = [str(s) for s in MarketState]

COUNTERS = {
    # name (without _total): (help, the status field it reads)
    "strategy_orders": ("Orders handed to the sink", attrgetter("orders_placed")),
    "mmframe_orders_cancelled": ("Cancels sent", attrgetter("orders_cancelled")),
    "mmframe_orders_rejected": ("Orders the sink rejected", attrgetter("orders_rejected")),
    "mmframe_orders_vetoed": ("Orders the risk gate refused", attrgetter("orders_vetoed")),
    "mmframe_orders_amended": ("Amends sent (one message each, where a cancel and a place would be two)",
                               attrgetter("orders_amended")),
    "mmframe_amends_rejected": ("Amends the sink refused (the order is cancelled and placed instead)",
                                attrgetter("amends_rejected")),
    "mmframe_fills": ("Fills of our orders", attrgetter("fills")),
    "mmframe_order_events": ("Order events the market applied (each one handed to the order_event hook)",
                             attrgetter("order_events")),
    "mmframe_volume": ("Filled quantity, base asset", attrgetter("volume")),
    "mmframe_ticks": ("Index ticks accepted", attrgetter("ticks")),
    "mmframe_ticks_rejected": ("Index ticks rejected as bad", attrgetter("ticks_rejected")),
    "mmframe_reconcile_cancelled": ("Open orders with our prefix the market did not track, cancelled by the "
                                    "periodic reconciliation", attrgetter("reconcile_cancelled")),
    "mmframe_reconcile_gone": ("Orders the market believed live that the sink no longer had, marked gone",
                               attrgetter("reconcile_gone")),
    "mmframe_cancel_retries": ("Unconfirmed cancels the periodic reconciliation sent again",
                               attrgetter("cancel_retries")),
    "mmframe_reconcile_errors": ("Reconciliation passes the sink failed or did not answer in time",
                                 attrgetter("reconcile_errors")),
}
GAUGES = {
    "strategy_active_orders": ("Live orders", attrgetter("active_orders")),
    "mmframe_orders_cancelling": ("Live orders whose cancel is asked and not yet confirmed", attrgetter("cancelling")),
    "mmframe_inventory": ("Net position, base asset", attrgetter("position")),
    "mmframe_pnl": ("Profit and loss marked at the index, quote asset", attrgetter("pnl")),
    "mmframe_messages_held": ("Messages the market's budget (max_messages_per_second) held back at its last step",
                              attrgetter("messages_held")),
    "mmframe_messages_behind_seconds": ("Seconds the market's budget has held back what it still has not sent",
                                        attrgetter("behind_seconds")),
}
FEED_COUNTERS = {
    "mmframe_feed_messages": ("Updates the feed delivered for the index symbol", attrgetter("messages")),
    "mmframe_feed_rejected": ("Messages for the index symbol the feed skipped as bad", attrgetter("rejected")),
    "mmframe_feed_reconnects": ("Reconnects of the feed's connection", attrgetter("reconnects")),
}
FEED_GAUGES = {
    "mmframe_feed_last_price": ("The last price the feed delivered for the index symbol", attrgetter("last_price")),
    "mmframe_feed_update_age_seconds": ("Seconds since the feed's last update for the index symbol",
                                        attrgetter("last_update_age")),
    "mmframe_feed_connected": ("1 while the feed's connection is up", attrgetter("connected")),
}
AUDIT_GAUGES = {
    # name: (help, the figure in AuditTrail.status())
    "mmframe_audit_pending": ("Order events and fills waiting to be written to the store", "pending"),
    "mmframe_audit_oldest_pending_seconds": ("Seconds the oldest record waiting to be written has waited",
                                             "oldest_pending_seconds"),
    "mmframe_audit_holding": ("1 while new orders are held because the audit trail is behind the store", "holding"),
}
AUDIT_COUNTERS = {
    "mmframe_audit_written": ("Order events and fills written to the store", "written"),
    "mmframe_audit_dropped": ("Order events and fills dropped unwritten, past the audit trail's memory bound",
                              "dropped"),
    "mmframe_audit_write_errors": ("Writes of the audit trail the store failed (retried)", "write_errors"),
    "mmframe_audit_holds": ("Times the audit trail's backlog reached its high-water mark and new orders were held",
                            "holds"),
    "mmframe_audit_held_orders": ("Orders refused because the audit trail was behind the store (each try)",
                                  "held_orders"),
}
AUDIT_NAMES = [*AUDIT_GAUGES, "mmframe_audit_received_total", *(f"{name}_total" for name in AUDIT_COUNTERS)]
METRIC_NAMES = (
    [f"{name}_total" for name in COUNTERS]
    + list(GAUGES)
    + [f"{name}_total" for name in FEED_COUNTERS]
    + list(FEED_GAUGES)
    + [
        "mmframe_quote_latency_seconds",
        "mmframe_feed_staleness_seconds",
        "mmframe_strategy_status",
        "mmframe_ticks_rejected_by_reason_total",
        "mmframe_sink_degraded",
        "mmframe_sink_circuit_open",
        "mmframe_sink_request_seconds",
        "mmframe_sink_operations_total",
        "mmframe_market_state",
        "mmframe_markets",
        "mmframe_up",
        *AUDIT_NAMES,
    ]
)


class _Collector:
    def __init__(self, service: Service) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        service = self.service
        cluster = service.cluster
        # In a cluster, the markets this instance owns, labelled with the instance (its member id).
        names = [*LABELS, "instance"] if cluster is not None else LABELS
        counters = {name: CounterMetricFamily(name, help_, labels=names) for name, (help_, _) in COUNTERS.items()}
        gauges = {name: GaugeMetricFamily(name, help_, labels=names) for name, (help_, _) in GAUGES.items()}
        latency = HistogramMetricFamily(
            "mmframe_quote_latency_seconds", "Index tick arrival to orders handed to the sink", labels=names
        )
        staleness = GaugeMetricFamily("mmframe_feed_staleness_seconds", "Seconds since the last good index tick",
                                      labels=names)
        feed_labels = [*names, "feed"]
        feed_counters = {n: CounterMetricFamily(n, h, labels=feed_labels) for n, (h, _) in FEED_COUNTERS.items()}
        feed_gauges = {n: GaugeMetricFamily(n, h, labels=feed_labels) for n, (h, _) in FEED_GAUGES.items()}
        strategy_values = GaugeMetricFamily("mmframe_strategy_status", "A number in the strategy's own status",
                                            labels=[*names, "key"])
        state = GaugeMetricFamily("mmframe_market_state", "1 for the market's current state",
                                  labels=[*names, "state"])
        rejected_by_reason = CounterMetricFamily(
            "mmframe_ticks_rejected_by_reason", "Index ticks the market's index screen rejected, by reason",
            labels=[*names, "reason"],
        )
        for record in service.records.values():
            labels = [record.id, record.symbol, str(record.row.market_type)]
            if cluster is not None:
                if service.owner_of(record) != cluster.member:
                    continue
                labels.append(cluster.member)
            current = service.state_of(record)
            for name in STATES:
                state.add_metric([*labels, name], 1.0 if name == current else 0.0)
            status = service.status_of(record)
            if status is None:
                continue
            for name, (_, read) in COUNTERS.items():
                counters[name].add_metric(labels, float(read(status)))
            for name, (_, read) in GAUGES.items():
                gauges[name].add_metric(labels, float(read(status)))
            if status.index_age is not None:
                staleness.add_metric(labels, status.index_age)
            for key, value in _numbers(status.strategy_status):
                strategy_values.add_metric([*labels, key], value)
            for reason in REJECT_REASONS:
                rejected_by_reason.add_metric([*labels, reason], float(status.ticks_rejected_by_reason.get(reason, 0)))
            if status.feed is not None:
                figures = status.feed
                for name, (_, read) in FEED_COUNTERS.items():
                    feed_counters[name].add_metric([*labels, figures.feed], float(read(figures)))
                for name, (_, read) in FEED_GAUGES.items():
                    value = read(figures)
                    if value is not None:
                        feed_gauges[name].add_metric([*labels, figures.feed], float(value))
            runner = service.manager.runner(record.spec.key) if record.spec is not None else None
            if runner is not None:
                hist = runner.quote_latency
                latency.add_metric(labels, buckets=hist.cumulative(), sum_value=hist.sum)
        yield from counters.values()
        yield from gauges.values()
        yield from feed_counters.values()
        yield from feed_gauges.values()
        yield strategy_values
        yield rejected_by_reason
        yield latency
        yield staleness
        yield state
        yield from sink_metrics(service.sink)
        yield GaugeMetricFamily("mmframe_markets", "Configured markets", value=len(service.records))
        yield GaugeMetricFamily("mmframe_up", "1 while the service runs", value=1)
        if cluster is not None:
            for name, help_, value in (
                ("mmframe_cluster_leases", "Market leases this instance holds", len(cluster.leases)),
                ("mmframe_cluster_connected", "1 while the cluster's Redis answers", float(cluster.connected)),
                ("mmframe_cluster_instances", "Instances of the cluster alive", len(cluster.instances)),
            ):
                family = GaugeMetricFamily(name, help_, labels=["instance"])
                family.add_metric([cluster.member], float(value))
                yield family
        audit = service.audit.status()
        for name, (help_, key) in AUDIT_GAUGES.items():
            yield GaugeMetricFamily(name, help_, value=float(audit[key]))
        received = CounterMetricFamily("mmframe_audit_received", "Order events and fills the markets handed to the "
                                       "audit trail", labels=["kind"])
        received.add_metric(["order_event"], float(audit["received_order_events"]))
        received.add_metric(["fill"], float(audit["received_fills"]))
        yield received
        for name, (help_, key) in AUDIT_COUNTERS.items():
            yield CounterMetricFamily(name, help_, value=float(audit[key]))


def _numbers(status: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    """The numeric values of a strategy's status, nested mappings flattened with ``.`` (``slots.holding``)."""
    for key, value in status.items():
        name = f"{prefix}{key}"
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float | Decimal):
            number = float(value)
            if math.isfinite(number):
                yield name, number
        elif isinstance(value, Mapping):
            yield from _numbers(value, f"{name}.")


def sink_metrics(sink: Any) -> Iterator[Metric]:
    """What the sink says about itself, from the optional abilities it has (:mod:`mmframe.protocols`): its name
    (:class:`Named`), ``degraded`` (:class:`ReportsDegraded`), ``circuit_open`` (:class:`ReportsCircuit`),
    ``request_latency`` (:class:`ReportsRequestLatency`, a :class:`mmframe.sinktools.LatencyHistogram`) and
    ``statistics`` (:class:`ReportsSinkStatistics`, a mapping of counters). A sink without one reports no figure
    for it (the gauges read 0)."""
    name = [str(sink.name if isinstance(sink, Named) else type(sink).__name__)]
    degraded = GaugeMetricFamily("mmframe_sink_degraded", "1 while the sink cannot take orders", labels=["sink"])
    degraded.add_metric(name, 1.0 if isinstance(sink, ReportsDegraded) and sink.degraded else 0.0)
    circuit = GaugeMetricFamily("mmframe_sink_circuit_open", "1 while the sink's circuit breaker is open",
                                labels=["sink"])
    circuit.add_metric(name, 1.0 if isinstance(sink, ReportsCircuit) and sink.circuit_open else 0.0)
    latency = HistogramMetricFamily("mmframe_sink_request_seconds", "Seconds per request the sink made",
                                    labels=["sink"])
    histogram = sink.request_latency if isinstance(sink, ReportsRequestLatency) else None
    if isinstance(histogram, LatencyHistogram):
        latency.add_metric(name, buckets=histogram.cumulative(), sum_value=histogram.sum)
    operations = CounterMetricFamily("mmframe_sink_operations", "The sink's own counters", labels=["sink", "kind"])
    statistics = sink.statistics if isinstance(sink, ReportsSinkStatistics) else None
    if isinstance(statistics, Mapping):
        for kind, value in statistics.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                operations.add_metric([*name, str(kind)], float(value))
    yield from (degraded, circuit, latency, operations)


def make_registry(service: Service) -> CollectorRegistry:
    """A registry of its own for *service* (never the process-global one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(service))  # type: ignore[arg-type]
    return registry


def render_metrics(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The Prometheus text exposition of *registry* and its content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST
