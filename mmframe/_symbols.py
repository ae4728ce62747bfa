"""Symbols: the one place that splits ``BTCUSDT`` into base and quote and writes a symbol without separators."""

from __future__ import annotations

import re

__all__ = ["QUOTE_ASSETS", "compact_symbol", "split_symbol"]

#: Quote assets recognised at the end of a symbol written without a separator (``BTCUSDT``), tried longest first:
#: ``BTCUSDT`` is BTC/USDT, not BTCU/SDT or BTCUSD/T.
QUOTE_ASSETS = (
    "FDUSD", "USDT", "USDC", "USDK", "BUSD", "TUSD", "USD", "DAI", "EUR", "TRY", "BRL", "AUD", "SGD", "AED",
    "BTC", "ETH", "BNB", "OKB",
)  # fmt: skip

_BY_LENGTH = sorted(QUOTE_ASSETS, key=len, reverse=True)
_NOT_ALNUM = re.compile(r"[^A-Za-z0-9]")


def split_symbol(symbol: str, quotes: tuple[str, ...] = QUOTE_ASSETS) -> tuple[str, str] | None:
    """``BTCUSDT``, ``btc-usdt``, ``BTC_USDT`` or ``BTC/USDT`` → ``("BTC", "USDT")``, upper-cased.

    A symbol with a separator (``/``, ``-``, ``_``) splits at the first one; one without splits off the longest
    known quote asset in *quotes* that ends it. ``None`` when neither works (``BTC``, ``USDT``, ``FOOBAR``).
    """
    text = symbol.strip().upper()
    for sep in ("/", "-", "_"):
        if sep in text:
            base, _, quote = text.partition(sep)
            return (base, quote) if base and quote else None
    for quote in sorted(quotes, key=len, reverse=True) if quotes is not QUOTE_ASSETS else _BY_LENGTH:
        if text.endswith(quote) and len(text) > len(quote):
            return text[: -len(quote)], quote
    return None


def compact_symbol(symbol: str) -> str:
    """The symbol with every character but letters and digits removed, as exchanges write it: ``BTC/USDT`` →
    ``BTCUSDT``. Case is kept."""
    return _NOT_ALNUM.sub("", symbol)
