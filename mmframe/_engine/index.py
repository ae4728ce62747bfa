"""The index screen: what a market takes as its index price, from one feed or several.

A market quotes off its index, so a wrong index is an order at a wrong price. The screen stands between the feeds and
the strategy; every tick passes it or is rejected with a reason that is counted and logged:

1. **Per source** (each feed a market follows): a tick stamped in the future beyond ``IndexGuard.max_clock_skew``
   (``future``: it never becomes anyone's "last good tick", so one future-dated message cannot freeze a market); a
   tick older than the source's last good tick (``older``); a tick stamped longer ago than ``stale_after``
   (``stale``). A price that is not positive never gets this far: a :class:`mmframe.PriceTick` cannot hold one.
2. **Across sources** (a composite index, ``MarketSpec.index_sources``): the index is the median of the sources that
   are fresh (a good tick within ``stale_after``) and agree with it within ``IndexGuard.composite_band``; a source
   that disagrees is dropped from the median (``disagrees``). Two or more agreeing sources *confirm* the index: a big
   move they agree on is taken at once. With one fresh source (or none agreeing) the index is that source's price,
   screened like a single feed.
3. **Big moves of an unconfirmed index**: a price further than ``max_tick_jump`` (a fraction) from the index is a
   candidate (``jump``). The move is accepted only when the last ``confirm_ticks`` candidates — consecutive, with no
   tick near the old index between them — lie within ``IndexGuard.confirm_band`` of their median *and* span at
   least ``IndexGuard.confirm_seconds``. Counting alone is not agreement: ``1000000, 2, 300000, 7, 600000`` moves
   nothing.
4. **The halt circuit**: an unconfirmed index that moves more than ``IndexGuard.halt_move`` (a fraction of the lowest
   index in the window) within ``IndexGuard.halt_window`` seconds halts the market (every order cancelled, state
   ``halted``) until an operator starts it again. A move the composite confirms does not halt.

The screen is a plain object (no I/O, no clock of its own): the market hands it each tick with trio's time and the
wall-clock time, so it runs on trio's MockClock in tests and in a backtest alike.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import attrs

from .._errors import MMFrameError
from .._models import PriceTick
from .._validators import not_negative_seconds, positive_seconds
from .masking import masked

__all__ = ["REJECT_REASONS", "IndexGuard", "IndexHalt", "IndexScreen", "IndexSource", "Rejection"]

#: Every reason a tick can be rejected for (the keys of a market's ``ticks_rejected_by_reason``). ``invalid`` (a price
#: that is not positive) stays for the figures' sake but is never counted here: a :class:`mmframe.PriceTick` cannot
#: hold such a price, the feed refuses the message.
REJECT_REASONS = ("invalid", "future", "older", "stale", "jump", "disagrees")


def _fraction(instance: object, attribute: attrs.Attribute[Any], value: Decimal | None) -> None:
    if value is not None and not (value.is_finite() and 0 < value < 10):
        raise ValueError(f"{attribute.name} must be a fraction above 0 (0.01 is 1 %), got {value}")


def _opt_decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


@attrs.frozen
class IndexGuard:
    """How a market screens its index (see the module docstring for the whole path of a tick).

    :param confirm_band: the confirming ticks of a big move must all lie within this fraction of their median.
    :param confirm_seconds: ... and span at least this many seconds (receipt time): a burst cannot move the index.
    :param max_clock_skew: a tick stamped more than this many seconds in the future is rejected.
    :param composite_band: with several sources, one further than this fraction from their median is dropped.
    :param halt_move: an unconfirmed index moving more than this fraction within ``halt_window`` halts the market
        (``None``: never).
    :param halt_window: seconds over which ``halt_move`` is measured.
    """

    confirm_band: Decimal = attrs.field(default=Decimal("0.005"), converter=Decimal, validator=_fraction)
    confirm_seconds: float = attrs.field(default=1.0, validator=not_negative_seconds)
    max_clock_skew: float = attrs.field(default=2.0, validator=not_negative_seconds)
    composite_band: Decimal = attrs.field(default=Decimal("0.01"), converter=Decimal, validator=_fraction)
    halt_move: Decimal | None = attrs.field(default=Decimal("0.25"), converter=_opt_decimal, validator=_fraction)
    halt_window: float = attrs.field(default=60.0, validator=positive_seconds)


@attrs.frozen
class IndexSource:
    """One more feed a market takes its index from, beside its own ``feed`` (a composite index).

    :param feed: the registered feed name (``binance``, ``okex``, ``redis``, ...).
    :param feed_config: that feed's options (for ``redis``: ``exchange`` picks the bus channels).
    :param index_symbol: the symbol that feed knows the index by (default: the market's own index symbol).
    """

    feed: str
    feed_config: Mapping[str, Any] = attrs.field(factory=dict, repr=lambda config: repr(masked(config)))
    index_symbol: str = ""


class IndexHalt(MMFrameError):
    """The index moved more than ``halt_move`` within ``halt_window`` without a composite confirming it."""


@attrs.frozen
class Rejection:
    """A tick the screen refused: from which source, the reason's key (one of :data:`REJECT_REASONS`) and why."""

    source: str
    reason: str
    message: str


@attrs.define
class _Source:
    name: str
    last: PriceTick | None = None  # the source's latest tick that passed the per-source checks
    last_at: float | None = None  # when it arrived (trio time)
    # The timestamp of the source's last tick that made it into the index. "Older than the last good tick" is
    # judged against this, so a tick the index refused (a wild price stamped a little ahead) cannot make the good
    # ticks after it look old.
    good_stamp: float | None = None
    stamp: float = 0.0  # the latest tick's timestamp, but never later than the wall clock when it arrived


@attrs.frozen
class Verdict:
    """The screen's answer for one step: the new index (or ``None``: unchanged) and what was rejected."""

    tick: PriceTick | None
    rejections: tuple[Rejection, ...] = ()
    confirmed: bool = False  # two or more sources agree on it
    sources_agreeing: int = 0
    note: str = ""  # a move accepted after confirmation, for the log


class IndexScreen:
    """The index of one market, screened (see the module docstring).

    :param sources: the names of the market's sources, in order (the first is the market's own feed).
    """

    def __init__(
        self,
        sources: Sequence[str],
        *,
        symbol: str,
        max_tick_jump: Decimal,
        confirm_ticks: int,
        stale_after: float,
        guard: IndexGuard,
    ) -> None:
        if not sources:
            raise ValueError("an index needs at least one source")
        self.symbol = symbol
        self.sources = [_Source(name) for name in sources]
        self.max_tick_jump = Decimal(max_tick_jump)
        self.confirm_ticks = max(1, int(confirm_ticks))
        self.stale_after = stale_after
        self.guard = guard
        self.index: PriceTick | None = None
        self._candidates: list[tuple[float, Decimal]] = []  # (arrival, price) of a big move's candidate ticks
        # The lowest and highest accepted index within halt_window, as monotonic queues (O(1) per tick).
        self._lows: deque[tuple[float, Decimal]] = deque()
        self._highs: deque[tuple[float, Decimal]] = deque()
        self._history: deque[tuple[float, Decimal]] = deque()  # accepted index prices, for settled_price
        self.history_seconds = 0.0  # how far back settled_price may ask (set by the market from its risk limits)
        self.agreeing = 0
        # True while the index is in doubt: a big move waits for confirmation, or fresh sources disagree. The market
        # quotes nothing meanwhile (its last index may be the wrong one, and so may the new price).
        self.in_doubt = False
        self._proposer = self.sources[0].name
        self._contributors: list[_Source] = []

    @property
    def composite(self) -> bool:
        return len(self.sources) > 1

    # ---- per source --------------------------------------------------------------------------------------------

    def offer(self, source: int, tick: PriceTick, now: float, wall: float) -> Rejection | None:
        """Screen *tick* from source number *source* on its own; a good one becomes that source's latest."""
        src = self.sources[source]
        # No price check here: a PriceTick cannot hold a price that is not finite and positive (its constructor, and
        # attrs.evolve, refuse one), so the feed has already refused (and counted) such a message.
        reason, message = "", ""
        if tick.timestamp - wall > self.guard.max_clock_skew:
            reason, message = "future", (
                f"stamped {tick.timestamp - wall:.1f}s in the future (max_clock_skew {self.guard.max_clock_skew}s)"
            )
        elif src.good_stamp is not None and min(tick.timestamp, wall) < src.good_stamp:
            reason, message = "older", "older than the last good tick"
        elif wall - tick.timestamp > self.stale_after:
            reason, message = "stale", f"stamped {wall - tick.timestamp:.1f}s ago, older than stale_after"
        if reason:
            return Rejection(src.name, reason, f"{message} ({tick.price})")
        # A tick stamped a little ahead (inside max_clock_skew) counts as stamped now for ordering: it must not make
        # the ticks after it look old.
        src.last, src.last_at, src.stamp = tick, now, min(tick.timestamp, wall)
        return None

    # ---- the index ---------------------------------------------------------------------------------------------

    def update(self, now: float, wall: float) -> Verdict:
        """The index after the ticks offered since the last call. Raises :class:`IndexHalt` when the circuit trips."""
        candidate, rejections, confirmed = self._candidate(now)
        if candidate is None:
            if any(r.reason == "disagrees" for r in rejections):
                self.in_doubt = True
            return Verdict(None, tuple(rejections), sources_agreeing=self.agreeing)
        last = self.index
        note = ""
        if last is not None and not confirmed and abs(candidate.price - last.price) > last.price * self.max_tick_jump:
            accepted, why = self._confirm_move(candidate.price, now)
            if not accepted:
                rejections.append(Rejection(self._proposer, "jump", f"jump from {last.price} to "
                                            f"{candidate.price} ({why})"))
                self.in_doubt = True
                return Verdict(None, tuple(rejections), sources_agreeing=self.agreeing)
            note = f"index moved from {last.price} to {candidate.price}; accepted after {why}"
        self._candidates.clear()
        self.in_doubt = False
        if last is not None and candidate.price == last.price and candidate.timestamp == last.timestamp:
            return Verdict(None, tuple(rejections), confirmed, self.agreeing)  # nothing new
        self._record(candidate.price, now, confirmed)
        self.index = candidate
        for src in self._contributors:
            src.good_stamp = src.stamp if src.good_stamp is None else max(src.good_stamp, src.stamp)
        return Verdict(candidate, tuple(rejections), confirmed, self.agreeing, note)

    def _candidate(self, now: float) -> tuple[PriceTick | None, list[Rejection], bool]:
        """The price the sources propose now, whether two or more confirm it, and sources dropped as outliers."""
        fresh = [s for s in self.sources if s.last is not None and s.last_at is not None
                 and now - s.last_at <= self.stale_after]
        if not fresh:
            self.agreeing = 0
            return None, [], False
        if len(self.sources) == 1:
            self.agreeing = 1
            self._proposer = fresh[0].name
            self._contributors = fresh
            return fresh[0].last, [], False
        prices = sorted(s.last.price for s in fresh if s.last is not None)
        median = _median(prices)
        band = median * self.guard.composite_band
        agreeing = [s for s in fresh if s.last is not None and abs(s.last.price - median) <= band]
        rejections = [
            Rejection(s.name, "disagrees", f"{s.last.price} is more than {self.guard.composite_band} from the "
                      f"median {median} of the sources")
            for s in fresh if s not in agreeing and s.last is not None
        ]
        self.agreeing = len(agreeing)
        if len(agreeing) >= 2 and len(agreeing) * 2 > len(fresh):
            price = _median(sorted(s.last.price for s in agreeing if s.last is not None))
            stamp = max(s.last.timestamp for s in agreeing if s.last is not None)
            self._proposer = "composite"
            self._contributors = agreeing
            return PriceTick("composite", self.symbol, price, timestamp=stamp), rejections, True
        if len(fresh) == 1:  # the others are stale: the one left is screened alone, like a single feed
            if self.index is None:
                return None, [], False  # but a composite's first index needs a majority: wait for a second source
            self._proposer = fresh[0].name
            self._contributors = fresh
            return fresh[0].last, [], False
        # Fresh sources that do not agree (two far apart, or no majority): nobody can tell which is right. The index
        # stays; if they keep disagreeing it goes stale and the market pulls its quotes.
        self._contributors = []
        return None, [
            Rejection(s.name, "disagrees", f"{s.last.price}: the {len(fresh)} fresh sources do not agree within "
                      f"{self.guard.composite_band} of their median {median}")
            for s in fresh if s.last is not None
        ], False

    def _confirm_move(self, price: Decimal, now: float) -> tuple[bool, str]:
        """Add a candidate of a big move; True once enough candidates agree over enough time."""
        guard = self.guard
        self._candidates.append((now, price))
        # Keep the run of candidates that agree with the newest one: a disagreeing candidate starts a new run.
        run: list[tuple[float, Decimal]] = []
        for at, p in reversed(self._candidates):
            if abs(p - price) > price * guard.confirm_band * 2:
                break
            run.append((at, p))
        run.reverse()
        self._candidates = run[-max(self.confirm_ticks * 4, 16):]
        if len(run) < self.confirm_ticks:
            return False, f"{len(run)} of {self.confirm_ticks} agreeing ticks"
        last_n = run[-self.confirm_ticks:]
        median = _median(sorted(p for _, p in last_n))
        if any(abs(p - median) > median * guard.confirm_band for _, p in last_n):
            return False, f"the last {self.confirm_ticks} ticks disagree by more than {guard.confirm_band}"
        span = last_n[-1][0] - last_n[0][0]
        if span < guard.confirm_seconds:
            return False, f"{self.confirm_ticks} agreeing ticks over {span:.2f}s, fewer than {guard.confirm_seconds}s"
        return True, f"{len(run)} ticks agreed within {guard.confirm_band} over {span:.1f}s"

    def _record(self, price: Decimal, now: float, confirmed: bool) -> None:
        guard = self.guard
        lows, highs = self._lows, self._highs
        if confirmed and self.composite:
            lows.clear()  # the sources agree on the new level: it is the new base of the circuit
            highs.clear()
        while lows and lows[-1][1] >= price:
            lows.pop()
        lows.append((now, price))
        while highs and highs[-1][1] <= price:
            highs.pop()
        highs.append((now, price))
        for queue in (lows, highs):
            while now - queue[0][0] > guard.halt_window:
                queue.popleft()
        history = self._history
        history.append((now, price))
        while len(history) > 1 and now - history[1][0] >= self.history_seconds:
            history.popleft()
        if guard.halt_move is not None and not confirmed:
            low, high = lows[0][1], highs[0][1]
            if high - low > low * guard.halt_move:
                start = low if price == high else high  # the move that trips it ends at the new price
                raise IndexHalt(
                    f"index moved from {start} to {price} ({(price - start) / start:+.1%}) within "
                    f"{guard.halt_window:g}s (halt_move {guard.halt_move}) with no second source confirming it: "
                    "market halted until an operator starts it again"
                )

    def seed(self, index: PriceTick) -> None:
        """Start from *index*, the last index of an earlier run of the same market with the same sources: the first
        tick of this run is then screened against it (a wild first tick is a jump, not the index). It is not
        quoted on (the market waits for a tick of its own) and does not count in the halt circuit's window."""
        self.index = index

    def settled_price(self, now: float, after: float) -> Decimal | None:
        """The index as it stood *after* seconds ago (the oldest one known if the market is younger than that)."""
        history = self._history
        if not history:
            return None
        settled = history[0][1]
        for at, price in history:
            if now - at < after:
                break
            settled = price
        return settled

    def status(self, now: float) -> list[dict[str, Any]]:
        """Each source's last good price and its age (for the market status)."""
        return [
            {
                "source": s.name,
                "price": None if s.last is None else str(s.last.price),
                "age": None if s.last_at is None else round(now - s.last_at, 3),
            }
            for s in self.sources
        ]


def _median(prices: Sequence[Decimal]) -> Decimal:
    n = len(prices)
    mid = n // 2
    return prices[mid] if n % 2 else (prices[mid - 1] + prices[mid]) / 2
