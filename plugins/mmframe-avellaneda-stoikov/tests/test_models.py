"""The formulas (mmframe_avellaneda_stoikov.models) against hand-computed numbers and against direct evaluations of
the papers' formulas, and their dimensions: a change of price or quantity unit changes the quotes as it must."""

from __future__ import annotations

import math

import pytest
from mmframe_avellaneda_stoikov.models import (
    as_average_spread,
    as_reservation_price,
    as_spread,
    glft_coefficients,
    glft_depths,
    time_left,
)

from .helpers import gueant_glft, paper_as, paper_glft


def test_avellaneda_stoikov_by_hand() -> None:
    # s = 100, q = 2, gamma = 0.1, sigma = 2, k = 1.5, T - t = 0.5:
    # r = 100 - 2 * 0.1 * 4 * 0.5 = 99.6; spread = 0.1 * 4 * 0.5 + 20 * ln(1 + 1/15) = 0.2 + 1.290771...
    assert as_reservation_price(100, 2, 0.1, 2, 0.5) == pytest.approx(99.6, abs=1e-12)
    assert as_spread(0.1, 2, 1.5, 0.5) == pytest.approx(0.2 + 20 * math.log(16 / 15), abs=1e-12)
    assert as_spread(0.1, 2, 1.5, 0.5) == pytest.approx(1.4907704, abs=1e-7)
    bid, ask = paper_as(100, 2, 0.1, 2, 1.5, 0.5)
    r, spread = as_reservation_price(100, 2, 0.1, 2, 0.5), as_spread(0.1, 2, 1.5, 0.5)
    assert (r - spread / 2, r + spread / 2) == pytest.approx((bid, ask), abs=1e-12)


def test_the_average_spread_over_a_horizon() -> None:
    # finite: the mean of gamma sigma^2 (T - t) over [0, T] is gamma sigma^2 T / 2; the paper's gamma = 0.1 gives
    # 0.2 + 1.2908 = 1.4908 (its table: 1.49)
    assert as_average_spread(0.1, 2, 1.5, 1, "finite") == pytest.approx(1.4907704, abs=1e-7)
    taus = [(i + 0.5) / 100_000 for i in range(100_000)]
    numeric = math.fsum(as_spread(0.1, 2, 1.5, tau) for tau in taus) / len(taus)
    assert as_average_spread(0.1, 2, 1.5, 1, "finite") == pytest.approx(numeric, rel=1e-9)
    # rolling: T - t is always the horizon
    assert as_average_spread(0.1, 2, 1.5, 1, "rolling") == pytest.approx(as_spread(0.1, 2, 1.5, 1), abs=1e-12)


def test_time_left() -> None:
    assert time_left(10.0, 10.0, 60, "finite") == 60
    assert time_left(25.0, 10.0, 60, "finite") == 45
    assert time_left(69.5, 10.0, 60, "finite") == pytest.approx(0.5)
    assert time_left(70.0, 10.0, 60, "finite") == 60  # the next session
    assert time_left(95.0, 10.0, 60, "finite") == 35
    assert time_left(1e6, 10.0, 60, "rolling") == 60


def test_glft_by_hand() -> None:
    # gamma = 0.1, A = 140, k = 1.5, sigma = 2, Delta = 1:
    # c1 = 10 ln(16/15) = 0.645385; c2 = sqrt(0.1 / 420 * (16/15)^16) = 0.0258586; sigma c2 = 0.0517172
    c1, c2 = glft_coefficients(0.1, 140, 1.5, 1)
    assert c1 == pytest.approx(10 * math.log(16 / 15), abs=1e-12)
    assert c1 == pytest.approx(0.6453852, abs=1e-7)
    assert c2 == pytest.approx(math.sqrt(0.1 / 420 * (16 / 15) ** 16), abs=1e-12)
    assert c2 == pytest.approx(0.0258586, abs=1e-7)
    # q = 0: both sides c1 + sigma c2 / 2; q = 3 orders: bid c1 + 3.5 sigma c2, ask c1 - 2.5 sigma c2
    assert glft_depths(0, 2, c1, c2, 1) == pytest.approx((0.6712438, 0.6712438), abs=1e-7)
    assert glft_depths(3, 2, c1, c2, 1) == pytest.approx((0.8263955, 0.5160922), abs=1e-6)


@pytest.mark.parametrize("q", [-7, -2, -1, 0, 1, 4, 10])
@pytest.mark.parametrize(("gamma", "sigma", "A", "k"), [(0.1, 2, 140, 1.5), (1, 2, 140, 1.5), (0.01, 0.3, 0.9, 0.3)])
def test_glft_is_the_2013_papers_formula_for_unit_orders(
    q: int, gamma: float, sigma: float, A: float, k: float
) -> None:
    c1, c2 = glft_coefficients(gamma, A, k, 1.0)
    assert glft_depths(q, sigma, c1, c2, 1.0) == pytest.approx(paper_glft(q, gamma, sigma, A, k), rel=1e-12)


@pytest.mark.parametrize(("size", "q"), [(0.5, -1.5), (0.5, 2.0), (2.0, 6.0), (0.01, 0.03), (3.0, 0.0)])
def test_glft_with_an_order_size_is_gueants_formula(size: float, q: float) -> None:
    """Orders of ``size`` base units, an inventory of ``q`` base units (``q / size`` orders)."""
    c1, c2 = glft_coefficients(0.1, 140, 1.5, size)
    assert glft_depths(q / size, 2, c1, c2, size) == pytest.approx(gueant_glft(q, size, 0.1, 2, 140, 1.5), rel=1e-12)


def test_glft_dimensions() -> None:
    """A price unit c times smaller (cents for dollars) multiplies prices and sigma by c and divides k and gamma by c:
    the depths are multiplied by c. A base unit b times smaller multiplies the order size and the inventory by b and
    divides gamma by b (it is per price x base unit): the depths do not change. A time unit t times shorter divides
    A by t and sigma by sqrt(t): nothing changes."""
    gamma, sigma, A, k, size, q = 0.1, 2.0, 140.0, 1.5, 0.5, 1.5

    def depths(gamma: float, sigma: float, A: float, k: float, size: float, q: float) -> tuple[float, float]:
        c1, c2 = glft_coefficients(gamma, A, k, size)
        return glft_depths(q / size, sigma, c1, c2, size)

    base = depths(gamma, sigma, A, k, size, q)
    c = 100.0
    assert depths(gamma / c, sigma * c, A, k / c, size, q) == pytest.approx((base[0] * c, base[1] * c), rel=1e-9)
    b = 1000.0
    assert depths(gamma / b, sigma, A, k, size * b, q * b) == pytest.approx(base, rel=1e-9)
    t = 60.0
    assert depths(gamma, sigma / math.sqrt(t), A / t, k, size, q) == pytest.approx(base, rel=1e-9)


def test_glft_spread_does_not_depend_on_inventory_and_skews_against_it() -> None:
    c1, c2 = glft_coefficients(0.1, 140, 1.5, 1)
    spreads = {round(sum(glft_depths(n, 2, c1, c2, 1)), 12) for n in range(-5, 6)}
    assert spreads == {round(2 * c1 + 2 * c2, 12)}
    # long: both quotes lower (bid further, ask nearer); short: both higher
    long_bid, long_ask = glft_depths(2, 2, c1, c2, 1)
    flat_bid, flat_ask = glft_depths(0, 2, c1, c2, 1)
    assert long_bid > flat_bid and long_ask < flat_ask


def test_glft_small_gamma_limit_is_finite() -> None:
    """As gamma -> 0: c1 -> 1/k and (1 + x)^(1/x + 1) -> e (no overflow, no division trouble)."""
    c1, c2 = glft_coefficients(1e-12, 140, 1.5, 1)
    assert c1 == pytest.approx(1 / 1.5, rel=1e-9)
    assert c2 == pytest.approx(math.sqrt(1e-12 / 420 * math.e), rel=1e-6)
