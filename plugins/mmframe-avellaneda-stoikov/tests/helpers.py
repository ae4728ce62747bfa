"""What the tests share: the paper's market (mid 100, tick 0.01), configs, a FakeContext at a given moment, and the
models' formulas written out once more, independently of the package (straight from the papers)."""

from __future__ import annotations

import math
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from mmframe import Market, Position, Quote, Side
from mmframe.testing import FakeContext

D = Decimal
#: Prices to 2 decimals on a 0.01 tick, quantities to 4 decimals.
MARKET = Market("SIM/USD", tick_size="0.01", price_precision=2, quantity_precision=4, min_quantity="0.0001")
#: The paper's parameters (Avellaneda & Stoikov 2008, section 4): s = 100, sigma = 2, k = 1.5, A = 140, T = 1.
PAPER = {"sigma": 2, "k": 1.5, "A": 140}


def as_config(**changes: Any) -> dict[str, Any]:
    """avellaneda_stoikov with the paper's parameters, gamma 0.1, one unit per order, a finite horizon of 1 s. A
    change to ``None`` removes the key."""
    config: dict[str, Any] = {"gamma": 0.1, "quantity": 1, "horizon": 1, "horizon_mode": "finite", **PAPER}
    config.update(changes)
    return {k: v for k, v in config.items() if v is not None}


def glft_config(**changes: Any) -> dict[str, Any]:
    """glft with the paper's parameters, gamma 0.1, one unit per order."""
    config: dict[str, Any] = {"gamma": 0.1, "quantity": 1, **PAPER}
    config.update(changes)
    return {k: v for k, v in config.items() if v is not None}


def context(
    index: str | None = "100", *, now: float = 0.0, position: str = "0", market: Market = MARKET
) -> FakeContext:
    return FakeContext(market=market, now=now, index_price=index, position=Position(base=D(position)))


def book(quotes: list[Quote]) -> tuple[list[Decimal], list[Decimal]]:
    """(bid prices, ask prices) in the order given."""
    return [q.price for q in quotes if q.side is Side.BUY], [q.price for q in quotes if q.side is Side.SELL]


def floor(price: float, tick: str = "0.01") -> Decimal:
    step = D(tick)
    return (D(str(price)) / step).to_integral_value(rounding=ROUND_FLOOR) * step


def ceil(price: float, tick: str = "0.01") -> Decimal:
    step = D(tick)
    return (D(str(price)) / step).to_integral_value(rounding=ROUND_CEILING) * step


# ---- the formulas, straight from the papers ----------------------------------------------------------------------


def paper_as(s: float, q: float, gamma: float, sigma: float, k: float, tau: float) -> tuple[float, float]:
    """Avellaneda & Stoikov (2008), (29) and (30): ``(bid, ask)`` = reservation price -/+ half the spread."""
    r = s - q * gamma * sigma**2 * tau
    spread = gamma * sigma**2 * tau + 2 / gamma * math.log(1 + gamma / k)
    return r - spread / 2, r + spread / 2


def paper_glft(q: float, gamma: float, sigma: float, A: float, k: float) -> tuple[float, float]:
    """Guéant, Lehalle & Fernandez-Tapia (2013), the asymptotic approximations (unit orders, q in units):
    ``(delta_b, delta_a)``."""
    root = math.sqrt(sigma**2 * gamma / (2 * k * A) * (1 + gamma / k) ** (1 + k / gamma))
    base = 1 / gamma * math.log(1 + gamma / k)
    return base + (2 * q + 1) / 2 * root, base - (2 * q - 1) / 2 * root


def gueant_glft(q: float, size: float, gamma: float, sigma: float, A: float, k: float) -> tuple[float, float]:
    """Guéant (2017), "Optimal market making", the closed-form approximations with order size ``size`` and
    ``xi = gamma``, q in base units: ``(delta_b, delta_a)``."""
    xd = gamma * size
    omega = math.sqrt(gamma * sigma**2 / (2 * A * size * k) * (1 + xd / k) ** (k / xd + 1))
    base = 1 / xd * math.log(1 + xd / k)
    return base + (2 * q + size) / 2 * omega, base - (2 * q - size) / 2 * omega
