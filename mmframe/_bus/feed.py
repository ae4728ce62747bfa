"""The built-in ``redis`` feed: index prices (and depth) from the market-data bus.

A publisher (``mmframe feed publish``, or the seed's Go feed service) holds the exchange connection and publishes
every update to Redis; any number of ``mmframe serve`` processes follow it here. A market on this feed listens
on ``price:update:{exchange}:{symbol}`` (and, with ``depth``, ``depth:update:{exchange}:{symbol}``) where
``exchange`` is the feed's configured exchange (``mmframe serve`` fills it from the strategy config's
``external_exchange`` or ``MMFRAME_EXCHANGE``) and ``symbol`` the market's index symbol. Payloads are decoded by
:mod:`mmframe._bus.wire`; a bad one is counted as rejected and skipped.

One connection serves every market with the same feed options; it subscribes a market's channels when the
market subscribes and unsubscribes them (within 0.1 s) when the market's subscription closes. When Redis goes
away the feed reconnects with backoff and resubscribes; meanwhile no tick arrives, so the markets' staleness
check pulls their quotes until prices flow again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ClassVar

import attrs
import trio

from .._hookspecs import hookimpl
from .._models import MarketData
from .._settings import RedisSettings
from ..config import positive
from ..feedtools import Backoff, BadMessage, FeedHub, FeedSymbolStats
from ..protocols import Subscription
from .link import BRIDGE_ERRORS, Subscriber
from .wire import decode_depth, decode_price, depth_channel, price_channel

__all__ = ["RedisFeed", "register_feeds"]

log = logging.getLogger("mmframe.feed.redis")


def _port(instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if not 0 < value < 65536:
        raise ValueError(f"{attribute.name} must be a TCP port (1 to 65535), got {value!r}")


def _name(instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if not value or ":" in value or value != value.strip():
        raise ValueError(f"{attribute.name} must be a non-empty name without ':' or spaces, got {value!r}")


class RedisFeed:
    """An :class:`~mmframe.protocols.ExchangeFeed` that follows the Redis market-data bus."""

    name: ClassVar[str] = "redis"

    @attrs.frozen
    class Config:
        """The ``redis`` feed's options (``mmframe serve`` fills the connection from ``MARKET_REDIS_*``).

        :param host, port, db, password: the market Redis.
        :param exchange: the ``{exchange}`` part of the channels (``binance``, ``okex``, ...); a feed without one
            refuses every subscription.
        :param depth: also follow the ``depth:update`` channel of each symbol.
        :param timeout: seconds to connect, and to wait for a reply.
        :param backoff_initial, backoff_max: reconnect delays (exponential with jitter between them).
        """

        host: str = "127.0.0.1"
        port: int = attrs.field(default=6379, validator=_port)
        db: int = attrs.field(default=0, validator=attrs.validators.ge(0))
        password: str | None = attrs.field(default=None, repr=False)
        exchange: str | None = attrs.field(default=None, validator=attrs.validators.optional(_name))
        depth: bool = True
        timeout: float = attrs.field(default=2.0, converter=float, validator=positive)
        backoff_initial: float = attrs.field(default=0.5, converter=float, validator=positive)
        backoff_max: float = attrs.field(default=10.0, converter=float, validator=positive)

        @property
        def address(self) -> RedisSettings:
            return RedisSettings(host=self.host, port=self.port, password=self.password, db=self.db)

    def __init__(self, config: Config | None = None) -> None:
        self.config = config if config is not None else RedisFeed.Config()
        self.hub = FeedHub("redis")
        self.backoff = Backoff(initial=self.config.backoff_initial, maximum=self.config.backoff_max)
        self._routes: dict[bytes, tuple[str, str]] = {}  # channel → (kind, symbol) of what is subscribed
        self._subscriber: Subscriber | None = None
        self._running = False

    def __repr__(self) -> str:
        return f"<RedisFeed {self.config.address.describe()} exchange={self.config.exchange}>"

    # -- the ExchangeFeed protocol ------------------------------------------------------------------------------

    def subscribe(self, symbol: str, listener: Callable[[MarketData], None]) -> Subscription:
        """Deliver *symbol*'s ticks (and depth) from the bus to *listener* until the subscription closes."""
        if ":" in symbol or not symbol.strip():
            raise ValueError(f"symbol must be a non-empty name without ':', got {symbol!r}")
        if self.config.exchange is None:
            raise ValueError(f"the redis feed has no exchange (config.exchange): it cannot name the bus channels of "
                             f"{symbol}, price:update:{{exchange}}:{symbol}")
        return self.hub.subscribe(symbol, listener)

    def symbol_statistics(self, symbol: str) -> FeedSymbolStats:
        return self.hub.statistics(symbol)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Follow the bus until cancelled: ready at once; connects when the first symbol is subscribed."""
        if self._running:
            raise RuntimeError("this RedisFeed is already running")
        self._running = True
        task_status.started()
        address = self.config.address.describe()
        try:
            while True:
                while not self.hub.symbols():
                    await self.hub.wait_changed()
                try:
                    await self._session()
                except BRIDGE_ERRORS as exc:
                    delay = self.backoff.next()
                    (log.warning if self.hub.is_connected or self.backoff.attempts == 1 else log.debug)(
                        "market Redis %s: %s; reconnecting in %.1fs", address, exc or type(exc).__name__, delay
                    )
                    # an outage counts once as a reconnect, however many attempts it takes
                    self.hub.disconnected(reconnecting=self.hub.is_connected)
                    await trio.sleep(delay)
        finally:
            self._running = False
            self.hub.disconnected(reconnecting=False)

    # -- one connection -----------------------------------------------------------------------------------------

    def _channels(self, symbol: str) -> dict[bytes, tuple[str, str]]:
        exchange = self.config.exchange or ""  # subscribe refuses every symbol without one
        routes = {price_channel(exchange, symbol).encode(): ("price", symbol)}
        if self.config.depth:
            routes[depth_channel(exchange, symbol).encode()] = ("depth", symbol)
        return routes

    def _sync(self, subscriber: Subscriber) -> None:
        """Bring the connection's channels in line with the symbols markets follow now."""
        wanted: dict[bytes, tuple[str, str]] = {}
        for symbol in self.hub.symbols():
            wanted.update(self._channels(symbol))
        added = [c.decode() for c in wanted if c not in self._routes]
        removed = [c.decode() for c in self._routes if c not in wanted]
        self._routes = wanted  # a message on a removed channel is ignored from now on
        subscriber.unsubscribe(removed)
        subscriber.subscribe(added)

    async def _session(self) -> None:
        subscriber = Subscriber(self.config.address, timeout=self.config.timeout)
        self._routes = {}
        self._sync(subscriber)

        async def follow_changes() -> None:
            while True:
                # Sync, then wait, with no checkpoint between: a market subscribing after the sync above and
                # before this task first waits (markets start together) would otherwise go unheard.
                self._sync(subscriber)
                await self.hub.wait_changed()

        lost: BaseException | None = None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(follow_changes)
                try:
                    await subscriber.run(on_connected=self._connected, on_message=self._on_message)
                except BRIDGE_ERRORS as exc:
                    lost = exc  # raised below, outside the nursery, so the caller sees it unwrapped
                nursery.cancel_scope.cancel()
            if lost is not None:
                raise lost
        finally:
            self._routes = {}

    def _connected(self) -> None:
        if self.backoff.attempts:
            log.info("market Redis %s: connected", self.config.address.describe())
        self.hub.connected()
        self.backoff.reset()

    def _on_message(self, channel: bytes, data: bytes) -> None:
        route = self._routes.get(channel)
        if route is None:
            return  # a channel unsubscribed a moment ago
        kind, symbol = route
        try:
            if kind == "price":
                item: MarketData = decode_price(data, self.config.exchange or "", symbol)
            else:
                item = decode_depth(data, self.config.exchange or "", symbol)
        except (BadMessage, ValueError) as exc:
            self.hub.reject(f"{channel.decode(errors='replace')}: {exc}", symbol, raw=data)
            return
        except Exception as exc:  # a trio callback: anything escaping it would end the process
            self.hub.reject(f"{channel.decode(errors='replace')}: {type(exc).__name__}: {exc}", symbol, raw=data)
            return
        self.hub.deliver(item)


@hookimpl
def register_feeds(register: Callable[..., None]) -> None:
    register(RedisFeed)
