"""Symbols: the one place that splits ``BTCUSDT`` into base and quote and writes a symbol without separators."""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["QUOTE_ASSETS", "compact_symbol", "split_symbol"]

#: The quote assets a market's symbol ends with when the seed writes it without a separator (``BTCUSDT``): the
#: local symbol of a ``strategy_currency`` row with no ``mmframe_market`` row is split by these, so the list is part
#: of every such market's identity (its orders and fills are kept under that symbol) and must not grow casually:
#: ``BTCAUD`` stays ``BTCAUD``. Tried in order, so a quote that ends another (``USD``) comes after it (``TUSD``).
QUOTE_ASSETS = ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "DAI", "USD", "EUR", "TRY", "BRL", "BTC", "ETH", "BNB")

_NOT_ALNUM = re.compile(r"[^A-Za-z0-9]")


def split_symbol(symbol: str, quotes: Sequence[str] = QUOTE_ASSETS) -> tuple[str, str] | None:
    """``BTCUSDT``, ``btc-usdt``, ``BTC_USDT`` or ``BTC/USDT`` → ``("BTC", "USDT")``, upper-cased.

    A symbol with a separator (``/``, ``-``, ``_``) splits at the first one; one without splits off the first quote
    asset of *quotes* that ends it (an exchange's own list, or mmframe's :data:`QUOTE_ASSETS`): list a quote before
    any quote that ends it. ``None`` when neither works (``BTC``, ``USDT``, ``FOOBAR``).
    """
    text = symbol.strip().upper()
    for sep in ("/", "-", "_"):
        if sep in text:
            base, _, quote = text.partition(sep)
            return (base, quote) if base and quote else None
    for quote in quotes:
        if text.endswith(quote) and len(text) > len(quote):
            return text[: -len(quote)], quote
    return None


def compact_symbol(symbol: str) -> str:
    """The symbol with every character but letters and digits removed, as exchanges write it: ``BTC/USDT`` →
    ``BTCUSDT``. Case is kept."""
    return _NOT_ALNUM.sub("", symbol)
