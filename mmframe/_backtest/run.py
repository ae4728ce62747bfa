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
import itertools
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, ClassVar

import attrs
import trio

from .._engine.manager import StrategyManager
from .._engine.spec import MarketSpec, MarketState
from .._errors import ConfigError, MMFrameError, unwrapped
from .._hookspecs import hookimpl
from .._models import DepthSnapshot, Market, MarketData, PriceTick, Side, Trade, to_decimal
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

#: Most steps of a synthetic path, and the largest starting mid.
MAX_STEPS = 1_000_000
MAX_S0 = Decimal("1e12")

#: Most points a synthetic path's series samples before the summary thins it (a step each, up to this many).
MAX_RAW_POINTS = 20_000

#: The largest gap between two events of a recording a replay accepts (seconds): beyond it a `t` is most likely
#: in the wrong unit (milliseconds), and every market would step through the gap a refresh at a time.
MAX_GAP = 7 * 86_400.0


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
               quotes: tuple[Decimal | None, Decimal | None] | None = None, series: bool = True) -> None:
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
        kept = self.series
        if kept is not None and series:
            kept["t"].append(round(t, 6))
            kept["mid"].append(mid)
            kept["pnl"].append(pnl)
            kept["inventory"].append(float(position.base))
            kept["bid"].append(None if bid is None else float(bid))
            kept["ask"].append(None if ask is None else float(ask))

    def figures(self, path: int, seed: int, mark: float | None) -> PathFigures:
        exchange = self.exchange
        position = exchange.position(self.symbol)
        placed = exchange.placed.get(self.symbol, 0)
        pnl = float(position.pnl(Decimal(repr(mark)) if mark is not None else None))
        return PathFigures(
            path=path,
            seed=seed,
            pnl=pnl,
            final_inventory=float(position.base),
            fills=position.fills,
            volume=float(position.volume),
            messages=exchange.message_count(self.symbol),
            orders_placed=placed,
            fill_ratio=exchange.filled_orders.get(self.symbol, 0) / placed if placed else 0.0,
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
) -> dict[str, str]:
    """Start an engine with *specs* on *exchange*, run *drive*, then check that no market failed and stop. *pm*: a
    plugin manager made by :func:`_plugin_manager` for *hub* (default: a new one). Returns, for each market that
    never placed an order, what its strategy's status says (its ``waiting``, if it has one)."""
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
            idle: dict[str, str] = {}
            for status in manager.status():
                if status.state in (MarketState.FAILED, MarketState.HALTED):
                    raise BacktestError(f"market {status.symbol} {status.state} during the backtest: {status.error}")
                if status.orders_placed == 0:
                    waiting = status.strategy_status.get("waiting") if status.strategy_status else None
                    idle[status.symbol] = str(waiting) if waiting else "its strategy asked for no order"
            return idle
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
        with unwrapped():
            return trio.run(fn, clock=MockClock(autojump_threshold=0))
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
            if not math.isfinite(float(value)) or not good:
                raise ConfigError(f"model {name} out of range: {value!r}")
        if self.dt > self.horizon:
            raise ConfigError(f"model dt ({self.dt}) is longer than the horizon ({self.horizon})")
        steps = self.horizon / self.dt
        if abs(steps - round(steps)) > 1e-6 * steps:
            raise ConfigError(f"model horizon ({self.horizon}) is not a whole number of steps of dt ({self.dt}): "
                              f"{steps:.4f}")
        if round(steps) > MAX_STEPS:
            raise ConfigError(f"model horizon/dt is {round(steps):,} steps: at most {MAX_STEPS:,}")
        # A path moves by at most sigma * sqrt(horizon) * 8 in all but a vanishing share of paths (8 standard
        # deviations); a mid that could reach zero is refused rather than failing a path halfway.
        if self.sigma * math.sqrt(self.horizon) * 8 >= float(self.s0):
            raise ConfigError(f"model s0 ({self.s0}) is too close to zero for sigma {self.sigma} over {self.horizon} "
                              f"s: the mid could fall below zero (s0 must exceed 8·sigma·√horizon = "
                              f"{8 * self.sigma * math.sqrt(self.horizon):.4g})")
        if self.s0 > MAX_S0:
            raise ConfigError(f"model s0 ({self.s0}) is too large: at most {MAX_S0}")

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
        fields: dict[str, Any] = {}
        for key, value in values.items():
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise ConfigError(f"model {key} must be a number, got {value!r}")
            try:
                fields[key] = to_decimal(value, name=key) if key in ("s0", "trade_size") else float(value)
            except (TypeError, ValueError, ArithmeticError):
                raise ConfigError(f"model {key} must be a number, got {value!r}") from None
        return cls(**fields)

    def check_market(self, market: Market) -> None:
        """Refuse a ``trade_size`` the market cannot fill whole lots of."""
        step = market.quantity_step
        if self.trade_size % step != 0:
            raise ConfigError(f"model trade_size {self.trade_size} is not a whole number of the market's quantity "
                              f"step {step}: an arrival could fill none of it")


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
) -> tuple[list[PathFigures], dict[str, list[Any]] | None, list[str]]:
    timeline = Timeline()
    hub = FeedHub()

    def wall() -> float:
        return SYNTHETIC_EPOCH + trio.current_time()

    template_fees = exchange_config.fees.get(template.market.symbol)
    if template_fees is not None:  # the market's fees hold for every path (each a market of its own symbol)
        exchange_config = attrs.evolve(exchange_config, fees={
            _path_market(template.market, path).symbol: template_fees for path in paths})
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
                trackers[i].sample(t + dt / 2 - t0, mid, spread=False, quotes=(bid, ask),
                                   series=n % stride == 0)
        await timeline.run_until(t0 + model.steps * dt)
        exchange.finish()

    stride = max(1, model.steps // MAX_RAW_POINTS)
    idle = await _with_engine(specs, exchange, hub, wall, drive, strategies)
    figures = [
        tracker.figures(path, s, mid) for tracker, path, s, mid in zip(trackers, paths, seeds, mids, strict=True)
    ]
    series = next((t.series for t in trackers if t.series is not None), None)
    notes = [f"path {path}: no order placed ({idle[spec.market.symbol]})" for path, spec in zip(paths, specs,
             strict=True) if spec.market.symbol in idle]
    return figures, series, notes


def _synthetic_worker(
    template: MarketSpec, model: SyntheticModel, exchange_config: ExchangeConfig, seed: int, paths: Sequence[int],
    keep_series: bool,
    strategies: Sequence[type] = (),
) -> tuple[list[PathFigures], dict[str, list[Any]] | None, list[str]]:
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


def _worker_started() -> None:
    """In a worker process: die with the process that started it (Linux), and leave Ctrl-C to it (it ends the
    pool)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the pool's terminate still ends it with the run
        pass


def _run_chunk(args: tuple[Any, ...]) -> tuple[list[PathFigures], dict[str, list[Any]] | None, list[str]]:
    return _synthetic_worker(*args)


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
    notes: list[str] | None = None,
) -> tuple[list[PathFigures], dict[str, list[Any]] | None]:
    """Run *paths* paths of *model* with *template*'s strategy (its market's symbol, tick and precisions; each path
    a market of its own), at most *batch* paths per engine, shared evenly by *jobs* worker processes (1: in this
    process). Returns every path's figures, in path order, and path 0's series. The result depends on *seed* alone.
    *strategies*: strategy classes to register besides the installed plugins' (importable classes: they travel to
    the worker processes by name). *notes* collects a line for each path that placed no order.

    Ctrl-C (or an error) ends the worker processes at once; a worker whose parent dies ends with it."""
    if paths < 1:
        raise ConfigError("paths must be at least 1")
    model.check_market(template.market)
    batch = max(1, min(batch, -(-paths // max(1, jobs))))
    chunks = [list(range(start, min(paths, start + batch))) for start in range(0, paths, batch)]
    results: list[PathFigures] = []
    series: dict[str, list[Any]] | None = None

    def take(done: tuple[list[PathFigures], dict[str, list[Any]] | None, list[str]]) -> None:
        nonlocal series
        figures, chunk_series, chunk_notes = done
        results.extend(figures)
        series = series or chunk_series
        if notes is not None:
            notes.extend(chunk_notes)
        if progress is not None:
            progress(len(figures))

    work = [(template, model, exchange_config, seed, chunk, 0 in chunk, tuple(strategies)) for chunk in chunks]
    if jobs <= 1 or len(chunks) == 1:
        for args in work:
            take(_run_chunk(args))
        return results, series
    import multiprocessing

    pool = multiprocessing.get_context("spawn").Pool(min(jobs, len(chunks)), initializer=_worker_started)
    try:
        for done in pool.imap(_run_chunk, work):
            take(done)
        pool.close()
    finally:
        pool.terminate()  # at once on Ctrl-C or an error: queued chunks are not run
        pool.join()
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
    path: str,
) -> tuple[list[PathFigures], dict[str, list[Any]] | None, int, dict[str, Any]]:
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

    others: set[str] = set()  # feed symbols of the recording no market follows
    followed = 0  # events of the symbols the markets follow
    last_seen = first_t  # the last event's t

    async def drive() -> None:
        nonlocal count, followed, last_seen
        t0 = trio.current_time()
        next_sample = t0
        run_until = timeline.run_until
        push = hub.push
        on_data = exchange.on_data
        on_trade = exchange.on_trade
        statistics = trio.lowlevel.current_statistics
        when = now = t0
        next_timer = now + statistics().seconds_to_next_deadline
        last_data = t0
        woken = False  # the engine has something to handle since it last ran (data it follows, order events)
        emitted = exchange.emitted
        last_t = first_t
        for event in events:
            if event.t - last_t > MAX_GAP:
                raise BacktestError(
                    f"{path}, line {event.line}: t jumps {event.t - last_t:,.0f} s after the event before: more than "
                    f"{MAX_GAP / 86_400:.0f} days without data (a time in milliseconds instead of seconds?); replay "
                    "the parts on each side of the gap separately")
            last_t = event.t
            when = t0 + (event.t - first_t)
            item = event.item
            targets = by_feed_symbol.get(item.symbol)
            if targets is None:
                others.add(item.symbol)
            else:
                followed += 1
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
                kind = type(item)
                if kind is Trade:  # most events: no mid, no wake
                    for symbol in symbols_of[item.symbol]:
                        on_trade(item, symbol)  # type: ignore[arg-type]
                else:
                    if kind is not PriceTick:
                        for symbol in symbols_of[item.symbol]:
                            on_data(item, symbol)
                    mid = _mid_of(item)
                    if mid is not None:
                        for i in targets:
                            mids[i] = mid
                    if kind is PriceTick or depth_wakes[item.symbol]:
                        woken = True
                if exchange.emitted != emitted:
                    emitted = exchange.emitted
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
        last_seen = last_t
        end = max(trio.current_time(), when) + 1.0  # the last events' answers
        await run_until(end)
        exchange.finish()
        for i, tracker in enumerate(trackers):
            tracker.sample(end - t0, mids[i])

    idle = await _with_engine(specs, exchange, hub, wall, drive, strategies, pm)
    if not followed:
        wanted = ", ".join(sorted(by_feed_symbol))
        raise BacktestError(f"{path}: no event of {wanted}, the feed symbol the market follows (the recording holds "
                            f"{', '.join(sorted(others)) or 'no symbol'}): set the market's index_symbol")
    notes = {"idle": idle, "last_t": last_seen}
    figures = [tracker.figures(i, exchange_config.seed, mids[i]) for i, tracker in enumerate(trackers)]
    return figures, trackers[0].series, count, notes


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

    started = time.perf_counter()
    figures, series, count, notes = _virtual(functools.partial(
        _replay, specs, itertools.chain((first,), events), exchange_config, first.t, sample_every, progress,
        strategies, os.fspath(path)))
    info.update(events=count, last_t=notes["last_t"], replay_seconds=time.perf_counter() - started)
    info["warnings"] = [f"market {symbol} placed no order: {why}" for symbol, why in notes["idle"].items()]
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
