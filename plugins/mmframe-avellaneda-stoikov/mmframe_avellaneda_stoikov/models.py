"""The closed-form quotes of the two models, as plain float functions (the strategies put them on the tick grid).

Units throughout: prices and distances in price units, inventory and order size in base units, time in seconds;
``sigma`` in price units per square root of a second, ``A`` in trades per second, ``k`` per price unit, ``gamma``
per (price unit x base unit).

**Avellaneda & Stoikov (2008)**, "High-frequency trading in a limit order book", Quantitative Finance 8(3),
217-224, equations (29) and (30)::

    r(s, q, t)  = s - q gamma sigma^2 (T - t)                           (the reservation price)
    delta^a + delta^b = gamma sigma^2 (T - t) + (2 / gamma) ln(1 + gamma / k)   (the total spread)

and the quotes are ``r -/+ spread / 2``.

**Guéant, Lehalle & Fernandez-Tapia (2013)**, "Dealing with the inventory risk: a solution to the market making
problem", Mathematics and Financial Economics 7(4), 477-507, section 4 (the asymptotic, infinite-horizon
approximations), in the form with an order size ``Delta`` and ``xi = gamma`` of Guéant (2017), "Optimal market
making", Applied Mathematical Finance 24(2), 112-154::

    delta^b(q) = 1/(xi Delta) ln(1 + xi Delta / k) + ((2q + Delta) / 2) omega
    delta^a(q) = 1/(xi Delta) ln(1 + xi Delta / k) - ((2q - Delta) / 2) omega
    omega      = sqrt( gamma sigma^2 / (2 A Delta k) (1 + xi Delta / k)^(k / (xi Delta) + 1) )

with ``q`` in base units. Written with the inventory in orders, ``n = q / Delta``, and the coefficients of
hftbacktest's GLFT tutorial ``c1 = 1/(xi Delta) ln(1 + xi Delta / k)`` and
``c2 = sqrt( gamma / (2 A Delta k) (1 + xi Delta / k)^(k / (xi Delta) + 1) )`` (so ``omega = sigma c2``)::

    delta^b = c1 + Delta (2n + 1) / 2 sigma c2
    delta^a = c1 - Delta (2n - 1) / 2 sigma c2

With ``Delta = 1`` these are exactly the 2013 paper's formulas. Dimensions: ``xi Delta / k`` is a pure number,
``c1`` a price, ``c2`` a square root of seconds per base unit, so ``Delta sigma c2`` is a price.
"""

from __future__ import annotations

import math

__all__ = [
    "as_average_spread",
    "as_reservation_price",
    "as_spread",
    "glft_coefficients",
    "glft_depths",
    "time_left",
]


def time_left(now: float, start: float, horizon: float, mode: str) -> float:
    """``T - t`` at *now*: ``horizon`` in the ``rolling`` mode; in the ``finite`` mode, what is left of the session
    of *horizon* seconds that started at *start* (sessions follow each other: ``horizon - ((now - start) mod
    horizon)``, from *horizon* down towards 0, then *horizon* again)."""
    if mode == "rolling":
        return horizon
    return horizon - (now - start) % horizon


def as_reservation_price(s: float, q: float, gamma: float, sigma: float, tau: float) -> float:
    """Avellaneda-Stoikov's reservation price ``s - q gamma sigma^2 tau`` (*tau* = ``T - t``)."""
    return s - q * gamma * sigma * sigma * tau


def as_spread(gamma: float, sigma: float, k: float, tau: float) -> float:
    """Avellaneda-Stoikov's total spread ``gamma sigma^2 tau + (2 / gamma) ln(1 + gamma / k)``."""
    return gamma * sigma * sigma * tau + 2.0 / gamma * math.log1p(gamma / k)


def as_average_spread(gamma: float, sigma: float, k: float, horizon: float, mode: str) -> float:
    """The time average of :func:`as_spread` over one horizon: ``gamma sigma^2 horizon / 2 + (2 / gamma)
    ln(1 + gamma / k)`` in the ``finite`` mode (``T - t`` runs from *horizon* down to 0), ``gamma sigma^2 horizon +
    (2 / gamma) ln(1 + gamma / k)`` in the ``rolling`` mode (where the spread is constant)."""
    tau = horizon / 2 if mode == "finite" else horizon
    return as_spread(gamma, sigma, k, tau)


def glft_coefficients(gamma: float, A: float, k: float, delta: float) -> tuple[float, float]:
    """``(c1, c2)`` of the GLFT quotes with ``xi = gamma`` and order size *delta* (see the module documentation)."""
    x = gamma * delta / k  # xi Delta / k
    c1 = math.log1p(x) / (gamma * delta)
    # (1 + x)^(1/x + 1), through logarithms: no overflow, exact as x -> 0 (the limit is e)
    growth = math.exp((1.0 / x + 1.0) * math.log1p(x))
    c2 = math.sqrt(gamma / (2.0 * A * delta * k) * growth)
    return c1, c2


def glft_depths(n: float, sigma: float, c1: float, c2: float, delta: float) -> tuple[float, float]:
    """``(delta^b, delta^a)``: the bid's and the ask's distances from the mid with an inventory of *n* orders of
    *delta* (``n = q / delta``): ``c1 + delta (2n + 1) / 2 sigma c2`` and ``c1 - delta (2n - 1) / 2 sigma c2``."""
    skew = delta * sigma * c2
    return c1 + (2.0 * n + 1.0) / 2.0 * skew, c1 - (2.0 * n - 1.0) / 2.0 * skew
