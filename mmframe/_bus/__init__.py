"""The Redis market-data bus: its wire format, the ``redis`` feed that follows it, the publisher that feeds it.

See :mod:`mmframe._bus.wire` for the channels and payloads, :mod:`mmframe._bus.feed` for the feed and
:mod:`mmframe._bus.publisher` for ``mmframe feed publish``.
"""

from .feed import RedisFeed
from .publisher import BusPublisher, PublisherStatistics, publish_feed
from .wire import decode_depth, decode_price, depth_channel, encode, price_channel

__all__ = [
    "BusPublisher",
    "PublisherStatistics",
    "RedisFeed",
    "decode_depth",
    "decode_price",
    "depth_channel",
    "encode",
    "price_channel",
    "publish_feed",
]
