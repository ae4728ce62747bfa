"""Client order ids: ``{instance}-{SYMBOL}{market type}-{counter}``, e.g. ``mmf-BTCUSDT1-k3x9a0b2c``.

The prefix names the process's instance and the market, so a restarted process finds (by prefix) the orders an
earlier run left; the counter starts at the wall clock's microseconds, so no run of a market reuses an id.
"""

from __future__ import annotations

import time

from .._models import Market
from .._symbols import compact_symbol

__all__ = ["ClientIds", "base36", "client_prefix"]

_DIGITS36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_PAIRS36 = [a + b for a in _DIGITS36 for b in _DIGITS36]  # "00" to "zz": two digits per division


def base36(n: int) -> str:
    """*n* (not negative) in base 36, lower case, without leading zeros."""
    if n < 36:
        return _DIGITS36[n]
    out = []
    while n:
        n, r = divmod(n, 1296)
        out.append(_PAIRS36[r])
    return "".join(reversed(out)).lstrip("0")


def client_prefix(instance_id: str, market: Market) -> str:
    """The client-id prefix of *market*'s orders in instance *instance_id*: ``mmf-BTCUSDT1-``."""
    return f"{instance_id}-{compact_symbol(market.symbol)}{int(market.market_type)}-"


class ClientIds:
    """The client order ids of one market's run: *prefix* and a counter that starts at the wall clock's
    microseconds."""

    __slots__ = ("_head", "_high", "_seq", "prefix")

    def __init__(self, prefix: str, start: float | None = None) -> None:
        self.prefix = prefix
        self._seq = int((time.time() if start is None else start) * 1_000_000)
        self._high = -1  # the counter's digits but the last two change once in 1,296 ids: kept written out
        self._head = ""

    def next(self) -> str:
        """A client order id no run of this market has used: ``prefix + base36(counter)``."""
        self._seq += 1
        high, low = divmod(self._seq, 1296)
        if high != self._high:
            self._high = high
            self._head = f"{self.prefix}{base36(high) if high else ''}"
        return f"{self._head}{_PAIRS36[low] if high else base36(low)}"
