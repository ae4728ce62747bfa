"""mmframe's ``binance`` feed: index prices and depth from Binance Spot's public WebSocket market streams.

- :mod:`.feed` is the feed, :class:`BinanceFeed`, registered through ``register_feeds``.
- :mod:`.testing` is a fake Binance (WebSocket market streams and the two REST endpoints the feed reads) for tests
  over loopback sockets.
"""

from __future__ import annotations

from collections.abc import Callable

from mmframe import hookimpl

from .feed import BinanceFeed as BinanceFeed
from .feed import BinanceFeedStatistics as BinanceFeedStatistics

__all__ = ["BinanceFeed", "BinanceFeedStatistics", "register_feeds"]

__version__ = "0.1.0"


@hookimpl
def register_feeds(register: Callable[..., None]) -> None:
    register(BinanceFeed)
