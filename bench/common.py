"""What the benchmarks share: the JSON line, the machine, percentiles, the seed's strategy config, a feed the
benchmark drives by hand, and a recorder of the sink's acknowledgements."""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, ClassVar

from mmframe import Market, hookimpl
from mmframe._demo import SEED_STRATEGY_CONFIG
from mmframe._models import MarketData, OrderEvent, OrderEventKind
from mmframe.protocols import Subscription
from mmframe.testing import ScriptedFeed

__all__ = [
    "DEMO_SHAPE",
    "AckRecorder",
    "BenchFeed",
    "FeedPlugin",
    "emit",
    "log",
    "lognormal_path",
    "machine",
    "market",
    "percentile",
    "result",
    "seed_config",
]

#: The demo markets' shape (``mmframe._demo.DEMO_MARKETS``): tick 0.1, prices to 4 places, quantities to 2.
DEMO_SHAPE = {"tick_size": "0.1", "price_precision": 4, "quantity_precision": 2, "min_quantity": "0.01"}


def market(symbol: str) -> Market:
    """A market of the demo's shape."""
    return Market(symbol, **DEMO_SHAPE)  # type: ignore[arg-type]


def seed_config(**changes: Any) -> dict[str, Any]:
    """The seed's ``external_index_follow`` config (ten levels a side, tick 0.1), a fresh dict, with *changes*."""
    return {**json.loads(json.dumps(SEED_STRATEGY_CONFIG)), **changes}


def machine() -> dict[str, Any]:
    """Where the figures were measured."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
    }


def result(name: str, size: str, **figures: Any) -> dict[str, Any]:
    """The JSON object one benchmark prints: its name, its figures, the machine and the size."""
    return {"benchmark": name, **figures, "machine": machine(), "size": size}


def emit(line: dict[str, Any]) -> None:
    """Print *line* as one JSON line on stdout (and flush: a parent process reads it)."""
    sys.stdout.write(json.dumps(line, separators=(", ", ": "), default=str) + "\n")
    sys.stdout.flush()


def log(message: str, *args: Any) -> None:
    """Progress, on stderr."""
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {message % args if args else message}\n")
    sys.stderr.flush()


def percentile(values: Sequence[float], q: float) -> float:
    """The *q*-th percentile (0 to 100) of *values* by the nearest-rank method; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


class BenchFeed(ScriptedFeed):
    """A feed the benchmark drives: :meth:`deliver` hands an item to the listeners of its symbol now (what a real
    feed does on the trio thread), without keeping it. Every instance the engine makes is in ``instances``."""

    name: ClassVar[str] = "bench"
    instances: ClassVar[list[BenchFeed]] = []

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        BenchFeed.instances.append(self)

    def deliver(self, item: MarketData) -> None:
        for listener in list(self._listeners.get(item.symbol, {}).values()):
            listener(item)


class FeedPlugin:
    """Registers :class:`BenchFeed` as the feed ``bench``."""

    @hookimpl
    def register_feeds(self, register: Callable[..., None]) -> None:
        register(BenchFeed)


class AckRecorder:
    """Listens to a sink beside the markets and notes, with ``time.perf_counter()``, when each order was acknowledged
    (its ``accepted`` event) and how many cancels were confirmed."""

    def __init__(self) -> None:
        self.accepted = 0
        self.cancelled = 0
        self.last_ack = 0.0
        self.ack_times: dict[str, float] = {}
        self.keep_times = False
        self._subscriptions: list[Subscription] = []

    def attach(self, sink: Any, symbol: str, prefix: str = "") -> None:
        self._subscriptions.append(sink.subscribe(symbol, prefix, self))

    def __call__(self, event: OrderEvent) -> None:
        if event.kind is OrderEventKind.ACCEPTED:
            now = time.perf_counter()
            self.accepted += 1
            self.last_ack = now
            if self.keep_times:
                self.ack_times[event.client_order_id] = now
        elif event.kind is OrderEventKind.CANCELLED:
            self.cancelled += 1

    def close(self) -> None:
        for subscription in self._subscriptions:
            subscription.close()


def lognormal_path(start: Decimal, volatility: float, count: int, seed: int, step: str = "0.01") -> list[Decimal]:
    """*count* prices of a seeded log-normal random walk from *start* (``price *= exp(volatility * N(0, 1))``), each
    rounded to *step* (the index's own price step): the moves of a real index, made before anything is timed."""
    import random

    rng = random.Random(seed)
    quantum = Decimal(step)
    price = float(start)
    out = []
    for _ in range(count):
        out.append(Decimal(repr(price)).quantize(quantum))
        price *= math.exp(volatility * rng.gauss(0.0, 1.0))
    return out
