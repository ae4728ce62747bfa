"""message_efficiency: places + cancels per hour of ``external_index_follow`` in its ``reconcile`` mode against the
same strategy in ``replace_all`` mode (the seed's loop), on one recorded price path, and how far each lets its
resting quotes stray from the target ladder.

The replay is the plugin's own ``tests/test_efficiency.py``: ``plugins/mmframe-external-index-follow/tests/data/
price_path.ndjson`` (30 minutes of BTC/USDT, one tick a second), the seed's config verbatim plus ``mode``, the
paper sink, trio's MockClock (so 30 minutes take seconds). Messages are the market's ``orders_placed +
orders_cancelled``.

**Deviation.** Twice per recorded second — right after a tick has been handled, and right before the next one
arrives — our resting ladder on the paper book is compared with the *target ladder*: the strategy's own
``build_ladder`` at the current index (what a strategy that requoted on every tick would rest). Level by level,
nearest first on each side, the price difference is taken; ``max_dev`` is the largest over the replay, in the
quote currency (``max_dev_ticks`` in ticks of 0.1). A sample whose ladder has fewer levels than the target on a
side counts in ``incomplete_samples`` (and each missing level counts as far off as the target's level is from our
outermost quote on that side).

With the seed's config both modes rebuild the ladder at the current index at least once a second
(``maintenance_interval`` 1 s), and the path ticks once a second, so on this path both rest exactly the target
ladder whenever they are sampled; what ``reconcile`` saves is the levels whose rounded price did not change.

**Amend.** ``messages`` is ``reconcile`` with a sink used as one that cannot amend (``MarketSpec.amend`` off): every
moved level is a cancel and a place. ``amend_messages`` replays the same path with amends on (the paper sink can
amend): a moved level is one amend, so the figure counts ``orders_placed + orders_cancelled + orders_amended``;
``amend_ratio`` is it over the replace-all count, and ``amend_max_dev`` its maximum deviation, sampled the same way.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import mmframe_external_index_follow
import trio
import trio.testing
from mmframe_external_index_follow import ExternalIndexFollow, build_ladder

from mmframe import Market, Side
from mmframe._default_plugins.paper import PaperSink
from mmframe._engine.manager import StrategyManager
from mmframe._engine.risk import RiskLimits
from mmframe._engine.spec import MarketSpec
from mmframe._models import MarketKey, PriceTick
from mmframe._plugins import make_plugin_manager
from mmframe.config import structure_config

from .common import BenchFeed, FeedPlugin, log, result, seed_config

NAME = "message_efficiency"
ROOT = Path(__file__).resolve().parent.parent
PATH = ROOT / "plugins" / "mmframe-external-index-follow" / "tests" / "data" / "price_path.ndjson"
SECONDS = {"tiny": 120, "full": None}  # None: the whole path
BTC = Market("BTC/USDT", tick_size="0.1", price_precision=4, quantity_precision=2)  # the plugin tests' market
KEY = MarketKey("BTC/USDT")


def recorded_path(seconds: int | None = None) -> list[tuple[int, Decimal]]:
    with PATH.open() as f:
        prices = [(int(row["t"]), Decimal(row["price"])) for row in map(json.loads, f)]
    return prices if seconds is None else prices[:seconds]


def spec(mode: str, *, amend: bool = False) -> MarketSpec:
    """As the plugin tests' ``helpers.spec``: the seed's config plus *mode*; *amend*: moves are amends."""
    return MarketSpec(
        market=BTC,
        strategy="external_index_follow",
        strategy_config=seed_config(mode=mode),
        feed="bench",
        index_symbol="BTCUSDT",
        risk=RiskLimits(),
        refresh_interval=1.0,
        stale_after=10.0,
        seed=7,
        amend=amend,
    )


def deviation(sink: PaperSink, target: list[Any]) -> tuple[Decimal, bool]:
    """The largest price difference between our resting ladder and *target*, level by level; and whether a side
    had fewer levels than the target."""
    ours = [o for o in sink.book(BTC.symbol).open_orders() if o.owner == sink.config.owner]
    worst = Decimal(0)
    incomplete = False
    for side in (Side.BUY, Side.SELL):
        resting = sorted((o.price for o in ours if o.side is side), reverse=side is Side.BUY)
        wanted = [q.price for q in target if q.side is side]
        for have, want in zip(resting, wanted, strict=False):
            worst = max(worst, abs(have - want))
        if len(resting) < len(wanted):
            incomplete = True
            # A missing level: as far off as the next quote we do rest (or the target's own spread to the index).
            outer = wanted[-1]
            nearest = resting[-1] if resting else wanted[0]
            worst = max(worst, abs(outer - nearest))
    return worst, incomplete


async def replay(prices: list[tuple[int, Decimal]], mode: str, amend: bool = False) -> dict[str, Any]:
    BenchFeed.instances.clear()
    pm = make_plugin_manager(load_entrypoints=False, plugins=(mmframe_external_index_follow, FeedPlugin()))
    sink = PaperSink()
    manager = StrategyManager(sink, pm, instance_id="t")
    config = structure_config(seed_config(mode=mode), ExternalIndexFollow.Config)
    max_dev = Decimal(0)
    incomplete = 0
    samples = 0
    async with trio.open_nursery() as nursery:
        await nursery.start(manager.run)
        await manager.start_market(spec(mode, amend=amend))
        feed = BenchFeed.instances[-1]
        start = trio.current_time()
        target: list[Any] | None = None
        for t, price in prices:
            await trio.sleep_until(start + t)
            if target is not None:  # the state the last second ended with
                dev, short = deviation(sink, target)
                max_dev, incomplete, samples = max(max_dev, dev), incomplete + short, samples + 1
            feed.deliver(PriceTick(exchange="scripted", symbol="BTCUSDT", price=price))
            await trio.testing.wait_all_tasks_blocked()
            target = build_ladder(config, BTC, price)
            dev, short = deviation(sink, target)
            max_dev, incomplete, samples = max(max_dev, dev), incomplete + short, samples + 1
        await trio.sleep(1)
        await trio.testing.wait_all_tasks_blocked()
        status = manager.status(KEY)[0]
        nursery.cancel_scope.cancel()
    return {
        "placed": status.orders_placed,
        "cancelled": status.orders_cancelled,
        "amended": status.orders_amended,
        "amends_rejected": status.amends_rejected,
        "max_dev": max_dev,
        "incomplete": incomplete,
        "samples": samples,
        "vetoed": status.orders_vetoed,
        "ticks": status.ticks,
    }


def run(size: str = "full") -> dict[str, Any]:
    prices = recorded_path(SECONDS[size])
    hours = len(prices) / 3600
    log("%s: replaying %d s of %s in both modes", NAME, len(prices), PATH.name)
    clock = trio.testing.MockClock(autojump_threshold=0)
    ours = trio.run(replay, prices, "reconcile", clock=clock)
    clock = trio.testing.MockClock(autojump_threshold=0)
    seeds = trio.run(replay, prices, "replace_all", clock=clock)
    clock = trio.testing.MockClock(autojump_threshold=0)
    amending = trio.run(replay, prices, "reconcile", True, clock=clock)
    messages = (ours["placed"] + ours["cancelled"] + ours["amended"]) / hours
    baseline = (seeds["placed"] + seeds["cancelled"] + seeds["amended"]) / hours
    amend_messages = (amending["placed"] + amending["cancelled"] + amending["amended"]) / hours
    tick = BTC.tick_size
    return result(
        NAME,
        size,
        messages=round(messages),
        baseline_messages=round(baseline),
        ratio=round(messages / baseline, 4),
        amend_messages=round(amend_messages),
        amend_ratio=round(amend_messages / baseline, 4),
        amend_max_dev=float(amending["max_dev"]),
        amend_max_dev_ticks=float(amending["max_dev"] / BTC.tick_size),
        amend_incomplete_samples=amending["incomplete"],
        amend_amends=amending["amended"],
        amend_places=amending["placed"],
        amend_cancels=amending["cancelled"],
        amends_rejected=amending["amends_rejected"],
        max_dev=float(ours["max_dev"]),
        baseline_max_dev=float(seeds["max_dev"]),
        max_dev_ticks=float(ours["max_dev"] / tick),
        baseline_max_dev_ticks=float(seeds["max_dev"] / tick),
        incomplete_samples=ours["incomplete"],
        baseline_incomplete_samples=seeds["incomplete"],
        samples=ours["samples"],
        places=ours["placed"],
        cancels=ours["cancelled"],
        baseline_places=seeds["placed"],
        baseline_cancels=seeds["cancelled"],
        seconds=len(prices),
        path=str(PATH.relative_to(ROOT)),
        units={"messages": "places + cancels (+ amends) per hour", "max_dev": "quote currency (USDT)"},
    )
