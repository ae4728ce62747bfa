"""The online estimators: sigma from a seeded random walk, A and k from seeded trades drawn from A exp(-k delta),
their windows, and what they say while they have no estimate."""

from __future__ import annotations

import math
import random

import pytest
from mmframe_avellaneda_stoikov import IntensityEstimator, VolatilityEstimator

# ---- volatility -------------------------------------------------------------------------------------------------


def random_walk(est: VolatilityEstimator, rng: random.Random, sigma: float, start: float, end: float,
                gaps: str = "regular", dt: float = 0.1, price: float = 100.0) -> float:
    """Feed the estimator a Brownian path of volatility *sigma* sampled from *start* to *end*; returns the last
    price."""
    t = start
    est.observe(t, price)
    while True:
        step = dt if gaps == "regular" else rng.expovariate(1 / dt)
        if t + step > end:
            return price
        t += step
        price += rng.gauss(0, sigma * math.sqrt(step))
        est.observe(t, price)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("gaps", ["regular", "irregular"])
def test_sigma_from_a_random_walk(seed: int, gaps: str) -> None:
    """10,000 changes: the relative error is about 1 / sqrt(20000) = 0.7 %; a few % is a wide margin."""
    rng = random.Random(seed)
    est = VolatilityEstimator(window=1000, min_samples=30)
    random_walk(est, rng, 2.0, 0.0, 1000.0, gaps)
    estimate = est.estimate(1000.0)
    assert estimate.reason is None and estimate.samples > 9000
    assert estimate.sigma == pytest.approx(2.0, rel=0.03)


def test_sigma_in_other_units() -> None:
    """A price of 0.0001 moving 1e-6 per square root of a second."""
    rng = random.Random(9)
    est = VolatilityEstimator(window=600, min_samples=30)
    random_walk(est, rng, 1e-6, 0.0, 600.0, dt=0.05, price=0.0001)
    assert est.estimate(600.0).sigma == pytest.approx(1e-6, rel=0.03)


def test_only_the_window_counts() -> None:
    """sigma 2 for 600 s, then 0.5: once the window (300 s) holds only the calm part, the estimate is 0.5."""
    rng = random.Random(4)
    est = VolatilityEstimator(window=300, min_samples=30)
    price = random_walk(est, rng, 2.0, 0.0, 600.0)
    assert est.estimate(600.0).sigma == pytest.approx(2.0, rel=0.05)
    random_walk(est, rng, 0.5, 600.0, 1200.0, price=price)
    estimate = est.estimate(1200.0)
    assert estimate.sigma == pytest.approx(0.5, rel=0.05) and estimate.elapsed == 300.0


def test_before_the_window_is_full_the_time_since_the_first_price_counts() -> None:
    est = VolatilityEstimator(window=60, min_samples=2)
    for t, price in [(10.0, 100.0), (11.0, 101.0), (14.0, 100.0)]:
        est.observe(t, price)
    # two changes of 1 over the 4 s since the first price; at 20 s, over 10 s
    assert est.estimate(14.0).sigma == pytest.approx(math.sqrt(2 / 4))
    assert est.estimate(20.0).sigma == pytest.approx(math.sqrt(2 / 10))
    # once they leave the window nothing is left
    estimate = est.estimate(74.5)
    assert estimate.sigma is None and estimate.samples == 0


def test_no_estimate_before_enough_changes() -> None:
    est = VolatilityEstimator(window=60, min_samples=3)
    assert est.estimate(0.0).reason == "sigma: 0 of the 3 index price changes needed in the last 60 s"
    for t, price in enumerate([100.0, 100.0, 100.0, 101.0, 101.0, 100.0]):
        est.observe(float(t), price)
    estimate = est.estimate(6.0)  # unchanged prices are no changes: 2 of 3
    assert estimate.sigma is None and estimate.samples == 2
    assert estimate.reason == "sigma: 2 of the 3 index price changes needed in the last 60 s"
    est.observe(7.0, 100.5)
    assert est.estimate(7.0).sigma == pytest.approx(math.sqrt(2.25 / 7))


def within(value: float | None, expected: float, rel: float) -> bool:
    return value is not None and abs(value / expected - 1) <= rel


# ---- intensity ----------------------------------------------------------------------------------------------------


def poisson_trades(est: IntensityEstimator, rng: random.Random, A: float, k: float, start: float, end: float) -> int:
    """Trades arriving at rate A, each reaching a distance drawn from exp(-k delta): the rate of trades reaching
    delta or further is A exp(-k delta). Returns how many."""
    t, n = start, 0
    while True:
        t += rng.expovariate(A)
        if t >= end:
            return n
        est.observe(t, rng.expovariate(k))
        n += 1


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
@pytest.mark.parametrize(("A", "k", "tick"), [(140.0, 1.5, 0.01), (5.0, 20.0, 0.001), (40.0, 0.3, 0.5)])
def test_a_and_k_from_trades(seed: int, A: float, k: float, tick: float) -> None:
    rng = random.Random(seed)
    window = 4000 / A  # about 4000 trades
    est = IntensityEstimator(window, 100, tick)
    est.start(0.0)
    poisson_trades(est, rng, A, k, 0.0, window)
    estimate = est.estimate(window)
    assert estimate.reason is None and 3500 < estimate.trades < 4500 and estimate.points >= 2
    assert within(estimate.A, A, 0.12) and within(estimate.k, k, 0.12)


def test_the_rate_counts_from_when_the_estimator_started_watching() -> None:
    """Started at 0, trades only from 50 s to 100 s: the rate is over 100 s (a quiet start is information)."""
    rng = random.Random(7)
    est = IntensityEstimator(1000, 100, 0.01, refit_interval=0)
    est.start(0.0)
    poisson_trades(est, rng, 140.0, 1.5, 50.0, 100.0)
    estimate = est.estimate(100.0)
    assert estimate.elapsed == 100.0 and within(estimate.A, 70.0, 0.12)


def test_only_the_window_counts_for_the_intensity() -> None:
    rng = random.Random(8)
    est = IntensityEstimator(50, 100, 0.01, refit_interval=0)
    est.start(0.0)
    poisson_trades(est, rng, 20.0, 0.5, 0.0, 100.0)
    poisson_trades(est, rng, 140.0, 1.5, 100.0, 150.0)
    estimate = est.estimate(150.0)
    assert estimate.elapsed == 50.0
    assert within(estimate.A, 140.0, 0.12) and within(estimate.k, 1.5, 0.12)


def test_the_grid_has_at_most_max_points() -> None:
    rng = random.Random(5)
    est = IntensityEstimator(100, 100, 0.0001, max_points=20)
    est.start(0.0)
    poisson_trades(est, rng, 100.0, 1.0, 0.0, 100.0)
    estimate = est.estimate(100.0)
    assert 2 <= estimate.points <= 20 and estimate.step >= 0.0001


def test_no_estimate_without_enough_trades_or_a_decay() -> None:
    est = IntensityEstimator(60, 5, 0.01, refit_interval=0)
    est.start(0.0)
    assert est.estimate(1.0).reason == "A and k: 0 of the 5 trades needed in the last 60 s"
    for i in range(10):
        est.observe(float(i), 0.0)  # every trade at the mid
    estimate = est.estimate(10.0)
    assert estimate.A is None and estimate.reason is not None and "too close to the mid" in estimate.reason
    far = IntensityEstimator(60, 5, 0.01, refit_interval=0)
    far.start(0.0)
    for i in range(10):
        far.observe(float(i), 1.0)  # every trade 1.0 away: as many reach 0.5 as reach 0 or 1.0, no decay
    estimate = far.estimate(10.0)
    assert estimate.A is None and estimate.reason is not None and "do not thin out" in estimate.reason


def test_the_fit_is_recomputed_at_most_once_per_refit_interval() -> None:
    rng = random.Random(6)
    est = IntensityEstimator(100, 100, 0.01, refit_interval=1.0)
    est.start(0.0)
    poisson_trades(est, rng, 140.0, 1.5, 0.0, 50.0)
    first = est.estimate(50.0)
    poisson_trades(est, rng, 140.0, 1.5, 50.0, 50.5)
    assert est.estimate(50.5) is first
    assert est.estimate(51.0) is not first and est.estimate(51.0).trades > first.trades
