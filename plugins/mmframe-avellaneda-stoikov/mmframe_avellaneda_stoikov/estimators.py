"""Online estimators of the models' market parameters: ``sigma`` from index prices, ``A`` and ``k`` from trades.

Pure Python, no clock of their own: every call is given the time (seconds of the engine's clock), so the same
estimator runs live, in a backtest and in a test the same way.

**Volatility** (:class:`VolatilityEstimator`). The models' mid is a Brownian motion ``ds = sigma dW``, so over a
time ``T`` the sum of the squared changes of ``s`` is ``sigma^2 T`` (its realised variance). The estimator keeps
every non-zero change of the index price seen in the last ``window`` seconds and answers

    sigma^2 = sum((s_i - s_{i-1})^2) / elapsed

where ``elapsed`` is the time those changes cover: ``window``, or less while the estimator has seen prices for less
than ``window`` seconds (from the first price to now). A change belongs to the window by the time its second price
was seen. The estimate exists once at least ``min_samples`` changes are in the window. Sampling the path at
irregular times (an engine that conflates ticks) leaves the estimate unbiased; its relative error is about
``1 / sqrt(2 n)`` for ``n`` changes.

**Order-arrival intensity** (:class:`IntensityEstimator`). The models say a quote at distance ``delta`` from the mid
is hit by market orders at the rate ``lambda(delta) = A exp(-k delta)``. A public trade at distance
``d = |price - mid|`` (the mid: the last index price when the trade is handed to the strategy) would have filled
any quote at distance ``d`` or less, so ``lambda(delta)`` is measured as the number of trades of the last
``window`` seconds with ``d >= delta``, divided by the time the window covers (``window``, or less since the
estimator started watching). It is evaluated on a grid ``delta_j = j * step`` from 0 up to the largest distance in
the window, where ``step`` is the market's tick, or a whole number of ticks when that would make more than
``max_points`` grid points; grid points with fewer than ``min_point_trades`` trades at or beyond them are left out
(their logarithm is too noisy). Then ``log lambda(delta) = log A - k delta`` is fitted by least squares, each point
weighted by its number of trades (the variance of the logarithm of a count ``n`` is about ``1 / n``). The estimate
exists once at least ``min_trades`` trades are in the window and the fit has two grid points and a positive ``k``.
Both sides' trades are pooled: one ``A`` and one ``k`` for bids and asks, as in the models.

Distances are counted in whole ticks (``floor(d / tick)``), which loses nothing: ``d >= j * tick`` exactly when
``floor(d / tick) >= j``. The fit is recomputed at most once per ``refit_interval`` seconds (it costs one pass over
the distinct distances of the window).
"""

from __future__ import annotations

import math
from collections import deque

import attrs

__all__ = ["IntensityEstimate", "IntensityEstimator", "VolatilityEstimate", "VolatilityEstimator"]

# A distance within this fraction of a tick below a whole number of ticks counts as that many ticks (float noise).
_TICK_NOISE = 1e-9
# Recompute a running sum from scratch after this many evictions (bounds the drift of float subtractions).
_RESUM_EVERY = 4096


@attrs.frozen
class VolatilityEstimate:
    """What :meth:`VolatilityEstimator.estimate` found: ``sigma`` (``None`` while there is none: ``reason`` says
    why), from ``samples`` price changes over ``elapsed`` seconds."""

    sigma: float | None
    samples: int
    elapsed: float
    reason: str | None = None


@attrs.frozen
class IntensityEstimate:
    """What :meth:`IntensityEstimator.estimate` found: ``A`` (trades per second at distance 0) and ``k`` (per price
    unit), ``None`` while there are none (``reason`` says why); from ``trades`` trades over ``elapsed`` seconds,
    fitted on ``points`` grid points ``step`` price units apart."""

    A: float | None
    k: float | None
    trades: int
    elapsed: float
    points: int = 0
    step: float = 0.0
    reason: str | None = None


class VolatilityEstimator:
    """Realised volatility of the index price over the last *window* seconds; see the module documentation."""

    def __init__(self, window: float, min_samples: int) -> None:
        if not window > 0:
            raise ValueError(f"window must be positive, got {window}")
        self.window = float(window)
        self.min_samples = int(min_samples)
        self._changes: deque[tuple[float, float]] = deque()  # (time, squared change) of each non-zero change
        self._sum = 0.0
        self._evicted = 0
        self._last: float | None = None
        self._since: float | None = None  # when the first price was seen

    def observe(self, t: float, price: float) -> None:
        """An index price *price* seen at time *t* (times never go backwards)."""
        last, self._last = self._last, price
        if last is None:
            self._since = t
            return
        change = price - last
        if change:
            square = change * change
            self._changes.append((t, square))
            self._sum += square
        self._evict(t)

    def _evict(self, now: float) -> None:
        changes = self._changes
        cutoff = now - self.window
        while changes and changes[0][0] <= cutoff:
            self._sum -= changes.popleft()[1]
            self._evicted += 1
        if not changes:
            self._sum = 0.0
        elif self._evicted >= _RESUM_EVERY:
            self._sum = math.fsum(square for _, square in changes)
            self._evicted = 0

    def estimate(self, now: float) -> VolatilityEstimate:
        """``sigma`` at time *now*, in price units per square root of a second."""
        self._evict(now)
        samples = len(self._changes)
        since = self._since
        elapsed = 0.0 if since is None else now - max(since, now - self.window)
        if samples < self.min_samples:
            reason = (
                f"sigma: {samples} of the {self.min_samples} index price changes needed in the last "
                f"{self.window:g} s"
            )
            return VolatilityEstimate(None, samples, elapsed, reason)
        if not elapsed > 0:
            return VolatilityEstimate(None, samples, elapsed, "sigma: no time has passed since the first price")
        return VolatilityEstimate(math.sqrt(max(self._sum, 0.0) / elapsed), samples, elapsed)


class IntensityEstimator:
    """``A`` and ``k`` of ``lambda(delta) = A exp(-k delta)`` from the trades of the last *window* seconds; see the
    module documentation. *tick* is the unit distances are counted in (the market's tick size)."""

    def __init__(
        self,
        window: float,
        min_trades: int,
        tick: float,
        *,
        max_points: int = 50,
        min_point_trades: int = 5,
        refit_interval: float = 1.0,
    ) -> None:
        if not window > 0 or not tick > 0:
            raise ValueError(f"window and tick must be positive, got {window} and {tick}")
        self.window = float(window)
        self.min_trades = int(min_trades)
        self.tick = float(tick)
        self.max_points = max(2, int(max_points))
        self.min_point_trades = max(1, int(min_point_trades))
        self.refit_interval = float(refit_interval)
        self._trades: deque[tuple[float, int]] = deque()  # (time, distance in whole ticks)
        self._counts: dict[int, int] = {}  # distance in ticks -> trades in the window
        self._since: float | None = None
        self._fit: IntensityEstimate | None = None
        self._fitted_at = -math.inf
        self._changed = True

    def start(self, t: float) -> None:
        """Start the clock the rates are counted against at *t* (the first mid price: before it no trade can be
        measured), unless it is running already."""
        if self._since is None:
            self._since = t

    def observe(self, t: float, distance: float) -> None:
        """A trade at *distance* (price units, at least 0) from the mid, at time *t*."""
        if not math.isfinite(distance):
            return
        self.start(t)
        ticks = int(abs(distance) / self.tick + _TICK_NOISE)
        self._trades.append((t, ticks))
        self._counts[ticks] = self._counts.get(ticks, 0) + 1
        self._changed = True
        self._evict(t)

    def _evict(self, now: float) -> None:
        trades, counts = self._trades, self._counts
        cutoff = now - self.window
        while trades and trades[0][0] <= cutoff:
            ticks = trades.popleft()[1]
            left = counts[ticks] - 1
            if left:
                counts[ticks] = left
            else:
                del counts[ticks]
            self._changed = True

    @property
    def trades(self) -> int:
        """Trades in the window (as of the last call)."""
        return len(self._trades)

    def estimate(self, now: float) -> IntensityEstimate:
        """``A`` (per second) and ``k`` (per price unit) at time *now*."""
        self._evict(now)
        fit = self._fit
        if fit is not None and (fit.A is not None or not self._changed) and now - self._fitted_at < self.refit_interval:
            return fit
        fit = self._fit = self._fitted(now)
        self._fitted_at = now
        self._changed = False
        return fit

    def _fitted(self, now: float) -> IntensityEstimate:
        n = len(self._trades)
        since = self._since
        elapsed = 0.0 if since is None else now - max(since, now - self.window)
        if n < self.min_trades:
            reason = f"A and k: {n} of the {self.min_trades} trades needed in the last {self.window:g} s"
            return IntensityEstimate(None, None, n, elapsed, reason=reason)
        if not elapsed > 0:
            return IntensityEstimate(None, None, n, elapsed, reason="A and k: no time has passed since the first trade")
        counts = self._counts
        widest = max(counts)
        step = max(1, math.ceil((widest + 1) / self.max_points))  # grid step, in ticks
        cells = [0] * (widest // step + 1)
        for ticks, count in counts.items():
            cells[ticks // step] += count
        # at_least[j]: trades at distance >= j * step ticks
        points: list[tuple[float, float, float]] = []  # (delta, log rate, weight)
        at_least = 0
        for j in range(len(cells) - 1, -1, -1):
            at_least += cells[j]
            if at_least >= self.min_point_trades:
                points.append((j * step * self.tick, math.log(at_least / elapsed), float(at_least)))
        step_size = step * self.tick
        if len(points) < 2:
            reason = (
                f"A and k: the {n} trades of the last {self.window:g} s are too close to the mid to fit a decay "
                f"(fewer than 2 distances of {step_size:g} apart with {self.min_point_trades} trades or more)"
            )
            return IntensityEstimate(None, None, n, elapsed, len(points), step_size, reason)
        total = math.fsum(w for _, _, w in points)
        mean_x = math.fsum(w * x for x, _, w in points) / total
        mean_y = math.fsum(w * y for _, y, w in points) / total
        sxx = math.fsum(w * (x - mean_x) ** 2 for x, _, w in points)
        sxy = math.fsum(w * (x - mean_x) * (y - mean_y) for x, y, w in points)
        slope = sxy / sxx
        k = -slope
        if not k > 0:
            reason = f"A and k: trades do not thin out with the distance from the mid (fitted k = {k:.6g})"
            return IntensityEstimate(None, None, n, elapsed, len(points), step_size, reason)
        A = math.exp(mean_y - slope * mean_x)
        return IntensityEstimate(A, k, n, elapsed, len(points), step_size)
