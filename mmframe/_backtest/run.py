"""Running a backtest: the engine the service runs, on trio's virtual clock, against the simulated exchange.

A backtest is one :class:`~mmframe._engine.manager.StrategyManager` (the strategy, the reconciler, the risk gate,
the tracker: unchanged) whose sink is the :class:`~.exchange.SimExchange` and whose markets follow the
``backtest`` feed, a hub the driver pushes market data into. It runs under ``trio.run`` on a
``MockClock(autojump_threshold=0)``: whenever every task waits, the clock jumps to the next thing due, so a run takes
as long as its computing does. The driver is either the replay of a recorded file (:func:`run_replay`) or the
synthetic model of Avellaneda & Stoikov (:func:`run_synthetic`), whose paths run as markets of one engine, split
over worker processes.
"""

from __future__ import annotations

import functools
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from decimal import Decimal
from typing import Any, ClassVar

import attrs
import trio

from .._engine.manager import StrategyManager
from .._engine.spec import MarketSpec, MarketState
from .._errors import ConfigError, MMFrameError
from .._hookspecs import hookimpl
from .._models import DepthSnapshot, Market, MarketData, PriceTick, Side, Trade
from .._plugins import get_strategies, make_plugin_manager
from ..protocols import Subscription
from .exchange import ExchangeConfig, SimExchange, Timeline
from .record import RecordedEvent, read_record

__all__ = [
    "BacktestError",
    "PathFigures",
    "SyntheticModel",
    "run_replay",
    "run_synthetic",
    "summarize",
]

#: The synthetic runs' virtual wall clock starts here (epoch seconds): results never depend on the day they ran.
SYNTHETIC_EPOCH = 1_700_000_000.0

#: Most points a series of the summary keeps (min/max kept per bucket when it has more).
MAX_SERIES_POINTS = 2_000


class BacktestError(MMFrameError):
    """A backtest could not run, or a market failed during it (the message says which and why)."""


# ---------------------------------------------------------------------------------------------------------------
# The feed the driver pushes into
# ---------------------------------------------------------------------------------------------------------------


class FeedHub:
    """Listeners by symbol: what the driver's market data reaches."""

    def __init__(self) -> None:
        self.listeners: dict[str, list[Callable[[MarketData], None]]] = {}

    def subscribe(self, symbol: str, listener: Callable[[MarketData], None]) -> Subscription:
        entries = self.listeners.setdefault(symbol, [])
        entries.append(listener)
        return Subscription(lambda: entries.remove(listener) if listener in entries else None)

    def push(self, item: MarketData) -> None:
        for listener in self.listeners.get(item.symbol, ()):
            listener(item)


class BacktestFeed:
    """The ``backtest`` feed: every instance hands its subscriptions to the run's :class:`FeedHub`."""

    name: ClassVar[str] = "backtest"
    hub: ClassVar[FeedHub]

    @attrs.frozen
    class Config:
        """No options."""

    def __init__(self, config: Any = None) -> None:
        self.config = config

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()

    def subscribe(self, symbol: str, listener: Callable[[MarketData], None]) -> Subscription:
        return self.hub.subscribe(symbol, listener)


class _Components:
    """Registers the run's feed and the strategy classes a caller hands the backtest directly."""

    def __init__(self, feed: type, strategies: Sequence[type]) -> None:
        self.feed = feed
        self.strategies = tuple(strategies)

    @hookimpl
    def register_feeds(self, register: Callable[..., None]) -> None:
        register(self.feed)

    @hookimpl
    def register_strategies(self, register: Callable[..., None]) -> None:
        for cls in self.strategies:
            register(cls)


# ---------------------------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------------------------


@attrs.frozen
class PathFigures:
    """One run's figures (a path of the synthetic model, or the replay)."""

    path: int
    seed: int
    pnl: float
    final_inventory: float
    fills: int
    volume: float
    messages: int
    orders_placed: int
    fill_ratio: float
    max_drawdown: float
    average_spread: float | None
    fees: float


class _Tracker:
    """Samples one market as the run goes: PnL marked to the mid, its running peak and drawdown, the spread of our
    quotes, and (for the market whose series the summary shows) the series."""

    __slots__ = ("drawdown", "exchange", "keep", "peak", "series", "spread_n", "spread_sum", "symbol")

    def __init__(self, exchange: SimExchange, symbol: str, keep: bool) -> None:
        self.exchange = exchange
        self.symbol = symbol
        self.keep = keep
        self.peak = 0.0
        self.drawdown = 0.0
        self.spread_sum = 0.0
        self.spread_n = 0
        self.series: dict[str, list[Any]] | None = (
            {"t": [], "mid": [], "pnl": [], "inventory": [], "bid": [], "ask": []} if keep else None
        )

    def sample(self, t: float, mid: float | None, *, spread: bool = True,
               quotes: tuple[Decimal | None, Decimal | None] | None = None) -> None:
        """Sample now (our best quotes as they stand, or *quotes*: those that stood during the step)."""
        exchange = self.exchange
        position = exchange.position(self.symbol)
        bid, ask = exchange.best_quotes(self.symbol) if quotes is None else quotes
        if spread and bid is not None and ask is not None:
            self.spread_sum += float(ask - bid)
            self.spread_n += 1
        if mid is None:
            return
        pnl = float(position.quote) + float(position.base) * mid - float(position.fees)
        if pnl > self.peak:
            self.peak = pnl
        elif self.peak - pnl > self.drawdown:
            self.drawdown = self.peak - pnl
        series = self.series
        if series is not None:
            series["t"].append(round(t, 6))
            series["mid"].append(mid)
            series["pnl"].append(pnl)
            series["inventory"].append(float(position.base))
            series["bid"].append(None if bid is None else float(bid))
            series["ask"].append(None if ask is None else float(ask))

    def figures(self, path: int, seed: int, mark: float | None) -> PathFigures:
        exchange = self.exchange
        position = exchange.position(self.symbol)
        placed = exchange.placed.get(self.symbol, [0, set(), Decimal(0)])
        pnl = float(position.pnl(Decimal(repr(mark)) if mark is not None else None))
        return PathFigures(
            path=path,
            seed=seed,
            pnl=pnl,
            final_inventory=float(position.base),
            fills=position.fills,
            volume=float(position.volume),
            messages=exchange.message_count(self.symbol),
            orders_placed=placed[0],
            fill_ratio=len(placed[1]) / placed[0] if placed[0] else 0.0,
            max_drawdown=self.drawdown,
            average_spread=self.spread_sum / self.spread_n if self.spread_n else None,
            fees=float(position.fees),
        )


# ---------------------------------------------------------------------------------------------------------------
# One engine on the virtual clock
# ---------------------------------------------------------------------------------------------------------------


async def _with_engine(
    specs: Sequence[MarketSpec],
    exchange: SimExchange,
    hub: FeedHub,
    wall: Callable[[], float],
    drive: Callable[[], Any],
    strategies: Sequence[type] = (),
    pm: Any = None,
) -> None:
    """Start an engine with *specs* on *exchange*, run *drive*, then check that no market failed and stop. *pm*: a
    plugin manager made by :func:`_plugin_manager` for *hub* (default: a new one)."""
    if pm is None:
        pm = _plugin_manager(hub, strategies)
    manager = StrategyManager(exchange, pm, instance_id="bt", wall=wall)
    async with trio.open_nursery() as nursery:
        await nursery.start(manager.run)
        try:
            for spec in specs:
                status = await manager.start_market(spec)
                if status.error or status.state in (MarketState.FAILED, MarketState.HALTED):
                    raise BacktestError(f"market {spec.label} did not start: {status.error or status.state}")
            await drive()
            for status in manager.status():
                if status.state in (MarketState.FAILED, MarketState.HALTED):
                    raise BacktestError(f"market {status.symbol} {status.state} during the backtest: {status.error}")
        finally:
            with trio.CancelScope(shield=True):
                await manager.aclose()
            nursery.cancel_scope.cancel()


def _plugin_manager(hub: FeedHub, strategies: Sequence[type]) -> Any:
    """The installed plugins, the run's feed (on *hub*) and *strategies*."""
    feed = type("BacktestFeed", (BacktestFeed,), {"hub": hub})
    return make_plugin_manager(load_entrypoints=True, plugins=(_Components(feed, strategies),))


def _virtual(fn: Callable[[], Any], seed: int = 0) -> Any:
    """Run the async *fn* under trio on a clock that jumps whenever every task waits, with trio's scheduler made
    deterministic (the switch trio has for Hypothesis: the tasks woken together run in an order drawn from a
    generator seeded here, not at random), so that a run depends on its inputs alone. The one exception a nursery
    wrapped in an exception group is raised as itself."""
    from trio._core import _run as trio_run
    from trio.testing import MockClock

    allowed, state = trio_run._ALLOW_DETERMINISTIC_SCHEDULING, trio_run._r.getstate()
    trio_run._ALLOW_DETERMINISTIC_SCHEDULING = True  # type: ignore[misc]
    trio_run._r.seed(seed)
    try:
        return trio.run(fn, clock=MockClock(autojump_threshold=0))
    except BaseExceptionGroup as group:
        inner: BaseException = group
        while isinstance(inner, BaseExceptionGroup) and len(inner.exceptions) == 1:
            inner = inner.exceptions[0]
        if inner is group:
            raise
        raise inner from None
    finally:
        trio_run._ALLOW_DETERMINISTIC_SCHEDULING = allowed  # type: ignore[misc]
        trio_run._r.setstate(state)


def backtest_spec(spec: MarketSpec, seed: int, **changes: Any) -> MarketSpec:
    """*spec* as a backtest runs it: on the ``backtest`` feed (its index symbol kept), its random numbers (the size
    variation of placed orders) seeded by the run's *seed* unless the spec has its own."""
    values: dict[str, Any] = {"feed": BacktestFeed.name, "feed_config": {}, "index_symbol": spec.feed_symbol,
                              "index_sources": (), "seed": spec.seed if spec.seed is not None else seed, **changes}
    return attrs.evolve(spec, **values)


# ---------------------------------------------------------------------------------------------------------------
# The synthetic model of Avellaneda & Stoikov
# ---------------------------------------------------------------------------------------------------------------


@attrs.frozen
class SyntheticModel:
    """The market of Avellaneda & Stoikov (2008), section 4: the mid starts at ``s0`` and moves up or down by
    ``sigma·√dt`` with equal probability every ``dt`` seconds, for ``horizon`` seconds. Each step our quotes stand
    from the step's start; the mid then moves, and a market sell (buy) order of ``trade_size`` hits our best bid
    (lifts our best ask) with probability ``min(1, A·e^(-k·δ)·dt)``, δ being the quote's distance from the new mid.
    The moves and the arrivals are drawn from two streams seeded by the path's seed: every strategy run on a seed
    sees the same mid path and the same uniform draws."""

    s0: Decimal = attrs.field(default=Decimal(100), converter=Decimal)
    sigma: float = 2.0
    dt: float = 0.005
    horizon: float = 1.0
    A: float = 140.0
    k: float = 1.5
    trade_size: Decimal = attrs.field(default=Decimal(1), converter=Decimal)
    name: ClassVar[str] = "avellaneda-stoikov"

    def __attrs_post_init__(self) -> None:
        checks = {"sigma": self.sigma >= 0, "dt": self.dt > 0, "horizon": self.horizon > 0, "A": self.A >= 0,
                  "k": self.k > 0, "s0": self.s0 > 0, "trade_size": self.trade_size > 0}
        for name, good in checks.items():
            value = getattr(self, name)
            if not good or not math.isfinite(float(value)):
                raise ConfigError(f"model {name} out of range: {value!r}")
        if self.horizon / self.dt > 10_000_000:
            raise ConfigError(f"model horizon/dt is {self.horizon / self.dt:.0f} steps: at most 10,000,000")
        if self.sigma * math.sqrt(self.dt) * 10 > float(self.s0):
            raise ConfigError("model sigma·√dt is too large for s0: the mid would go below zero")

    @property
    def steps(self) -> int:
        return max(1, round(self.horizon / self.dt))

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "s0": str(self.s0), "sigma": self.sigma, "dt": self.dt, "horizon": self.horizon,
                "A": self.A, "k": self.k, "trade_size": str(self.trade_size)}

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> SyntheticModel:
        known = {f.name for f in attrs.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ConfigError(f"unknown model keys: {', '.join(sorted(unknown))} (known: {', '.join(sorted(known))})")
        try:
            return cls(**{k: (v if k in ("s0", "trade_size") else float(v)) for k, v in values.items()})
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise ConfigError(f"model: {exc}") from None


def path_seed(seed: int, path: int) -> int:
    """The seed of path *path* of a run seeded *seed*: the same whichever worker runs it."""
    return random.Random(seed * 1_000_003 + path).getrandbits(62)


def _path_market(template: Market, path: int) -> Market:
    base, _, quote = template.symbol.partition("/")
    return attrs.evolve(template, symbol=f"{base}{path}/{quote or 'USD'}", base_asset="", quote_asset="")


async def _synthetic_chunk(
    template: MarketSpec, model: SyntheticModel, exchange_config: ExchangeConfig, seed: int, paths: Sequence[int],
    keep_series: bool,
    strategies: Sequence[type] = (),
) -> tuple[list[PathFigures], dict[str, list[Any]] | None]:
    timeline = Timeline()
    hub = FeedHub()

    def wall() -> float:
        return SYNTHETIC_EPOCH + trio.current_time()

    exchange = SimExchange(exchange_config, timeline, wall)
    specs = []
    for path in paths:
        market = _path_market(template.market, path)
        specs.append(backtest_spec(template, path_seed(seed, path), market=market,
                                   index_symbol=market.symbol.replace("/", ""), name=f"path {path}"))
    symbols = [spec.market.symbol for spec in specs]
    feed_symbols = [spec.feed_symbol for spec in specs]
    seeds = [path_seed(seed, path) for path in paths]
    moves = [random.Random(s) for s in seeds]
    arrivals = [random.Random(s ^ 0x5DEECE66D) for s in seeds]
    trackers = [_Tracker(exchange, symbol, keep_series and path == 0) for symbol, path in zip(symbols, paths,
                                                                                            strict=True)]
    step = model.sigma * math.sqrt(model.dt)
    s0 = float(model.s0)
    mids = [s0] * len(paths)
    dt, A, k, size = model.dt, model.A, model.k, model.trade_size
    exp = math.exp
    quantum = Decimal(1).scaleb(-8)

    async def drive() -> None:
        t0 = trio.current_time()
        for n in range(model.steps):
            t = t0 + n * dt
            await timeline.run_until(t)
            stamp = wall()
            for feed_symbol, mid in zip(feed_symbols, mids, strict=True):
                price = Decimal(repr(mid)).quantize(quantum)
                hub.push(PriceTick("synthetic", feed_symbol, price, stamp))
            await timeline.run_until(t + dt / 2)
            for i, symbol in enumerate(symbols):
                bid, ask = exchange.best_quotes(symbol)
                if bid is not None and ask is not None:
                    trackers[i].spread_sum += float(ask - bid)
                    trackers[i].spread_n += 1
                mid = mids[i] = mids[i] + (step if moves[i].random() < 0.5 else -step)
                hit_bid, hit_ask = arrivals[i].random(), arrivals[i].random()
                if bid is not None and hit_bid < min(1.0, A * exp(-k * (mid - float(bid))) * dt):
                    exchange.hit(symbol, Side.SELL, size)
                if ask is not None and hit_ask < min(1.0, A * exp(-k * (float(ask) - mid)) * dt):
                    exchange.hit(symbol, Side.BUY, size)
                trackers[i].sample(t + dt / 2 - t0, mid, spread=False, quotes=(bid, ask))
        await timeline.run_until(t0 + model.steps * dt)
        exchange.finish()

    await _with_engine(specs, exchange, hub, wall, drive, strategies)
    figures = [
        tracker.figures(path, s, mid) for tracker, path, s, mid in zip(trackers, paths, seeds, mids, strict=True)
    ]
    series = next((t.series for t in trackers if t.series is not None), None)
    return figures, series


def _synthetic_worker(
    template: MarketSpec, model: SyntheticModel, exchange_config: ExchangeConfig, seed: int, paths: Sequence[int],
    keep_series: bool,
    strategies: Sequence[type] = (),
) -> tuple[list[PathFigures], dict[str, list[Any]] | None]:
    import logging

    # A thousand markets starting and stopping say so at INFO, one line each: a study keeps to warnings (the level
    # is put back for a caller in this process).
    logger = logging.getLogger("mmframe")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        return _virtual(functools.partial(  # type: ignore[no-any-return]
            _synthetic_chunk, template, model, exchange_config, seed, paths, keep_series, strategies))
    finally:
        logger.setLevel(level)


def run_synthetic(
    template: MarketSpec,
    model: SyntheticModel,
    exchange_config: ExchangeConfig,
    *,
    paths: int = 1,
    seed: int = 1,
    jobs: int = 1,
    batch: int = 250,
    progress: Callable[[int], None] | None = None,
    strategies: Sequence[type] = (),
) -> tuple[list[PathFigures], dict[str, list[Any]] | None]:
    """Run *paths* paths of *model* with *template*'s strategy (its market's symbol, tick and precisions; each path
    a market of its own), at most *batch* paths per engine, on *jobs* worker processes (1: in this process).
    Returns every path's figures, in path order, and path 0's series. The result depends on *seed* alone.
    *strategies*: strategy classes to register besides the installed plugins' (importable classes: they travel to
    the worker processes by name)."""
    if paths < 1:
        raise ConfigError("paths must be at least 1")
    chunks = [list(range(start, min(paths, start + batch))) for start in range(0, paths, batch)]
    results: list[PathFigures] = []
    series: dict[str, list[Any]] | None = None
    if jobs <= 1 or len(chunks) == 1:
        for chunk in chunks:
            figures, chunk_series = _synthetic_worker(template, model, exchange_config, seed, chunk, 0 in chunk,
                                                      strategies)
            results.extend(figures)
            series = series or chunk_series
            if progress is not None:
                progress(len(chunk))
        return results, series
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = [pool.submit(_synthetic_worker, template, model, exchange_config, seed, chunk, 0 in chunk,
                               strategies) for chunk in chunks]
        for future in futures:
            figures, chunk_series = future.result()
            results.extend(figures)
            series = series or chunk_series
            if progress is not None:
                progress(len(figures))
    return results, series


# ---------------------------------------------------------------------------------------------------------------
# Replaying a recorded file
# ---------------------------------------------------------------------------------------------------------------


def _needs_engine(item: MarketData, targets: Sequence[str] | None, exchange: SimExchange,
                  depth_wakes: Mapping[str, bool]) -> bool:
    """Whether *item* wakes one of the markets *targets* (their symbols) or may fill one of our orders there: the
    engine must have caught up with its time."""
    if targets is None:
        return False
    if isinstance(item, Trade):
        if len(targets) == 1:  # the usual case, without a generator
            return exchange.could_fill(item, targets[0])
        return any(exchange.could_fill(item, symbol) for symbol in targets)
    if isinstance(item, DepthSnapshot):
        return depth_wakes[item.symbol] or any(exchange.could_cross(item, symbol) for symbol in targets)
    return True  # an index tick wakes its markets


def _mid_of(item: MarketData) -> float | None:
    if isinstance(item, PriceTick):
        return float(item.price)
    if isinstance(item, DepthSnapshot):
        mid = item.mid
        return None if mid is None else float(mid)
    return None


async def _replay(
    specs: Sequence[MarketSpec],
    events: Iterable[RecordedEvent],
    exchange_config: ExchangeConfig,
    first_t: float,
    sample_every: float,
    progress: Callable[[int], None] | None,
    strategies: Sequence[type],
) -> tuple[list[PathFigures], dict[str, list[Any]] | None, int]:
    timeline = Timeline()
    hub = FeedHub()

    def wall() -> float:
        return first_t + trio.current_time()

    exchange = SimExchange(exchange_config, timeline, wall)
    by_feed_symbol: dict[str, list[int]] = {}
    symbols_of: dict[str, list[str]] = {}  # feed symbol -> the symbols of the markets following it
    for i, spec in enumerate(specs):
        by_feed_symbol.setdefault(spec.feed_symbol, []).append(i)
        symbols_of.setdefault(spec.feed_symbol, []).append(spec.market.symbol)
    trackers = [_Tracker(exchange, spec.market.symbol, i == 0) for i, spec in enumerate(specs)]
    mids: list[float | None] = [None] * len(specs)
    # Whether a depth snapshot of a feed symbol wakes one of its markets (Strategy.wake_on_depth).
    pm = _plugin_manager(hub, strategies)
    registry = get_strategies(pm)
    depth_wakes: dict[str, bool] = {}
    for spec in specs:
        wakes = bool(registry.get_or_raise(spec.strategy).wake_on_depth)
        depth_wakes[spec.feed_symbol] = depth_wakes.get(spec.feed_symbol, False) or wakes
    data_latency = None if exchange_config.data_latency.zero else exchange_config.data_latency
    latency_rng = random.Random(exchange_config.seed ^ 0xDA7A)
    count = 0

    async def drive() -> None:
        nonlocal count
        t0 = trio.current_time()
        next_sample = t0
        run_until = timeline.run_until
        push = hub.push
        on_data = exchange.on_data
        statistics = trio.lowlevel.current_statistics
        when = now = t0
        next_timer = now + statistics().seconds_to_next_deadline
        last_data = t0
        woken = False  # the engine has something to handle since it last ran (data it follows, order events)
        emitted = exchange.emitted
        for event in events:
            when = t0 + (event.t - first_t)
            item = event.item
            targets = by_feed_symbol.get(item.symbol)
            # The clock moves to the event's time — the engine handles everything due until then — unless nothing
            # needs the engine before this event does: nothing woke it since it last ran, nothing is scheduled until
            # then (the exchange's timeline, a market's own timers), and the event can neither wake a market nor
            # fill one of our orders (a trade wakes no market; a depth snapshot wakes only a strategy that decides
            # on depth).
            if when > now and (
                woken
                or timeline.due_by(when)
                or _needs_engine(item, symbols_of.get(item.symbol), exchange, depth_wakes)
                or next_timer <= when  # a market's own timer (its refresh) is due
            ):
                await run_until(when)
                now = trio.current_time()
                # the markets' timers change only while they run: the next one is known until the next yield
                next_timer = now + statistics().seconds_to_next_deadline
                woken = False
            if targets is not None:
                if not isinstance(item, PriceTick):
                    for i in targets:
                        on_data(item, specs[i].market.symbol)
                    if exchange.emitted != emitted:
                        emitted = exchange.emitted
                        woken = True
                mid = _mid_of(item)
                if mid is not None:
                    for i in targets:
                        mids[i] = mid
                if isinstance(item, PriceTick) or (isinstance(item, DepthSnapshot) and depth_wakes[item.symbol]):
                    woken = True
            if data_latency is None:
                push(item)
            else:
                # market data keeps its order too: a later update never overtakes an earlier one
                last_data = max(when + data_latency.sample(latency_rng), last_data)
                timeline.at(last_data, push, item)
            count += 1
            if when >= next_sample:
                next_sample = when + sample_every
                for i, tracker in enumerate(trackers):
                    tracker.sample(when - t0, mids[i])
                if progress is not None:
                    progress(count)
        end = max(trio.current_time(), when) + 1.0  # the last events' answers
        await run_until(end)
        exchange.finish()
        for i, tracker in enumerate(trackers):
            tracker.sample(end - t0, mids[i])

    await _with_engine(specs, exchange, hub, wall, drive, strategies, pm)
    figures = [tracker.figures(i, exchange_config.seed, mids[i]) for i, tracker in enumerate(trackers)]
    return figures, trackers[0].series, count


def run_replay(
    specs: Sequence[MarketSpec],
    path: str | os.PathLike[str],
    exchange_config: ExchangeConfig,
    *,
    sample_every: float = 1.0,
    progress: Callable[[int], None] | None = None,
    strategies: Sequence[type] = (),
) -> tuple[list[PathFigures], dict[str, list[Any]] | None, dict[str, Any]]:
    """Replay the recorded file *path* through an engine running *specs* (each on the backtest feed, following its
    feed symbol in the file). Returns each market's figures, the first market's series, and what was replayed."""
    if not specs:
        raise ConfigError("nothing to backtest: no market")
    events = read_record(path)
    first = next(events, None)
    if first is None:
        raise BacktestError(f"{path}: the recording holds no event")
    specs = [backtest_spec(spec, exchange_config.seed + i) for i, spec in enumerate(specs)]
    info: dict[str, Any] = {"file": os.fspath(path), "first_t": first.t}
    last = [first]

    def chained() -> Iterator[RecordedEvent]:
        yield first
        for event in events:
            last[0] = event
            yield event

    started = time.perf_counter()
    figures, series, count = _virtual(functools.partial(
        _replay, specs, chained(), exchange_config, first.t, sample_every, progress, strategies))
    info.update(events=count, last_t=last[0].t, replay_seconds=time.perf_counter() - started)
    return figures, series, info


# ---------------------------------------------------------------------------------------------------------------
# The summary
# ---------------------------------------------------------------------------------------------------------------


def _stats(values: Sequence[float]) -> dict[str, float | None]:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return {"mean": None, "std": None, "min": None, "max": None}
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
    return {"mean": mean, "std": math.sqrt(var), "min": min(values), "max": max(values)}


def _downsample(series: Mapping[str, list[Any]], limit: int = MAX_SERIES_POINTS) -> dict[str, list[Any]]:
    n = len(series.get("t", ()))
    if n <= limit:
        return {k: list(v) for k, v in series.items()}
    keep = sorted({round(i * (n - 1) / (limit - 1)) for i in range(limit)})
    return {k: [v[i] for i in keep] for k, v in series.items()}


FIGURES = ("pnl", "final_inventory", "fills", "volume", "messages", "fill_ratio", "max_drawdown", "average_spread",
           "fees")


def summarize(
    figures: Sequence[PathFigures],
    series: Mapping[str, list[Any]] | None,
    **header: Any,
) -> dict[str, Any]:
    """The JSON summary (see ``docs/backtesting.md``): *header* (mode, strategy, market, model or source, exchange,
    seed, elapsed), the figures over paths, every path's figures and the first path's series."""
    per_path = [attrs.asdict(f) for f in figures]
    return {
        "mmframe_backtest": 1,
        **header,
        "paths": len(figures),
        "figures": {name: _stats([getattr(f, name) for f in figures]) for name in FIGURES},
        "per_path": per_path,
        "series": _downsample(series) if series else {"t": [], "mid": [], "pnl": [], "inventory": [], "bid": [],
                                                      "ask": []},
    }
