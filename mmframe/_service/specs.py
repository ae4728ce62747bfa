"""Database rows → market specs: which market a ``strategy_currency`` row describes, which feed it follows, and the
engine options of its ``mmframe_market.options`` (:data:`MarketOptions`), checked against what is installed."""

from __future__ import annotations

import difflib
import typing
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import attrs

from .._engine.spec import MarketSpec
from .._errors import ConfigError
from .._models import Market, MarketType
from .._settings import Settings
from .._store import MarketRow
from .._symbols import split_symbol
from ..config import structure_config
from ..protocols import Named

__all__ = [
    "BUS_FEED",
    "MarketOptions",
    "bus_defaults",
    "check_feeds",
    "choose_feed",
    "market_from_row",
    "market_symbol",
    "spec_from_row",
]

#: The built-in feed that follows the market-data bus (``MARKET_REDIS_*``).
BUS_FEED = "redis"

#: The :class:`mmframe.MarketSpec` fields a market's options do not set: the row gives the first four, and the
#: engine keeps its own ``cleanup_timeout``.
NOT_OPTIONS = frozenset({"market", "strategy", "strategy_config", "name", "cleanup_timeout"})

#: Where a market configured in the store starts from other defaults than :class:`mmframe.MarketSpec`'s.
STORE_DEFAULTS: Mapping[str, Any] = {
    "feed": None,  # chosen by choose_feed
    "index_symbol": None,  # likewise
    # 2 %, not the engine's 10 %: a single source sending a wrong price inside max_tick_jump is quoted at once, so a
    # service following one feed keeps that door narrow (a real move beyond it is taken after about a second).
    "max_tick_jump": Decimal("0.02"),
}


def _options_class() -> type:
    """The fields of :class:`mmframe.MarketSpec` but :data:`NOT_OPTIONS`, each with its type, validator and
    converter, every one optional (:data:`STORE_DEFAULTS`, else the spec's default)."""
    hints = typing.get_type_hints(MarketSpec)
    fields: dict[str, Any] = {}
    for field in attrs.fields(MarketSpec):
        if field.name in NOT_OPTIONS:
            continue
        default = STORE_DEFAULTS.get(field.name, field.default)
        kind = hints[field.name]
        if default is None and field.default is not None:
            kind = kind | None
        fields[field.name] = attrs.field(
            default=default, validator=field.validator, converter=field.converter, repr=field.repr, type=kind
        )
    cls = attrs.make_class("MarketOptions", fields, frozen=True)
    cls.__module__ = __name__
    cls.__doc__ = """The engine's options for one market (``mmframe_market.options``): the fields of
    :class:`mmframe.MarketSpec` but those the row gives (``market``, ``strategy``, ``strategy_config``, ``name``) and
    ``cleanup_timeout``, every one optional.

    Unlike the spec, ``feed`` and ``index_symbol`` default to ``None`` (see :func:`choose_feed`) and
    ``max_tick_jump`` to 0.02. ``index_sources`` are more feeds for a composite index (each ``{"feed",
    "feed_config", "index_symbol"}``); a ``redis`` source's connection defaults to ``MARKET_REDIS_*`` like the
    market's own feed.
    """
    return cls


MarketOptions: Any = _options_class()


def market_symbol(index_symbol: str) -> str:
    """The local symbol of an index symbol: ``BTCUSDT`` → ``BTC/USDT`` (see :func:`mmframe.feedtools.split_symbol`);
    one that does not split stays as it is written, upper-cased."""
    text = index_symbol.strip().upper()
    for sep in ("/", "-", "_"):  # written with a separator: that is the split, even with a side empty
        if sep in text:
            base, _, quote = text.partition(sep)
            return f"{base}/{quote}"
    parts = split_symbol(text)
    return "/".join(parts) if parts is not None else text


def market_from_row(row: MarketRow) -> Market:
    """The market's description: its ``mmframe_market`` row, else the strategy config's ``tick_size``,
    ``quote_precision`` (prices) and ``base_precision`` (quantities)."""
    market_type = MarketType(row.market_type)
    desc = row.description
    try:
        if desc is not None:
            return desc.market(market_type)
        config = row.effective_config
        missing = [k for k in ("tick_size", "quote_precision", "base_precision") if k not in config]
        if missing:
            raise LookupError(", ".join(missing))
        qp = int(config["base_precision"])
        return Market(
            market_symbol(row.index_symbol),
            tick_size=config["tick_size"],
            price_precision=int(config["quote_precision"]),
            quantity_precision=qp,
            min_quantity=Decimal(1).scaleb(-qp),
            market_type=market_type,
        )
    except LookupError as exc:
        raise ConfigError(f"no mmframe_market row describes this market and its config lacks {exc.args[0]}") from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"market description: {exc}") from None


def choose_feed(
    row: MarketRow, options: Any, settings: Settings, feeds: Mapping[str, Any] | None = None
) -> tuple[str, dict[str, Any], str]:
    """Which feed a market follows, with what options, under which index symbol.

    In order: the market's own ``feed`` option; the service's ``--feed`` / ``MMFRAME_FEED``; the ``redis`` bus
    when a market Redis is configured (``MARKET_REDIS_*``), on the channels of the exchange; else that exchange's
    feed plugin, connected directly. The exchange is the strategy config's ``external_exchange``, else the
    ``MMFRAME_EXCHANGE`` setting; a feed that declares a name (:class:`mmframe.protocols.Named`) gives its own (an
    alias such as ``okx`` follows the channels of ``okex``). The index symbol is the market's ``index_symbol``
    option, else the config's ``external_symbol``, else ``strategy_currency.index_symbol``. The ``redis`` feed's
    connection defaults to ``MARKET_REDIS_*``.
    """
    config = row.effective_config
    exchange = str(config.get("external_exchange") or settings.exchange or "").strip().lower()
    if feeds is not None and exchange in feeds and isinstance(feeds[exchange], Named):
        exchange = feeds[exchange].name
    index_symbol = options.index_symbol or str(config.get("external_symbol") or "") or row.index_symbol
    feed_config = dict(options.feed_config)
    if options.feed:
        feed = options.feed
    elif settings.feed:
        feed = settings.feed
    elif settings.market_redis is not None:
        feed = BUS_FEED
    elif exchange:
        feed = exchange
    else:
        raise ConfigError(
            "no feed to follow: the strategy config names no external_exchange and MMFRAME_EXCHANGE is not set; "
            "name the exchange (and install its feed plugin, pip install mmframe-<exchange>), choose a feed "
            "(MMFRAME_FEED), or set MARKET_REDIS_HOST to follow the Redis bus"
        )
    if feed == BUS_FEED:
        if exchange:
            feed_config.setdefault("exchange", exchange)
        feed_config = bus_defaults(feed, feed_config, settings)
    return feed, feed_config, index_symbol


def bus_defaults(feed: str, config: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """A ``redis`` feed's connection defaults to ``MARKET_REDIS_*``; other feeds' configs are left as they are."""
    config = dict(config)
    address = settings.market_redis
    if feed == BUS_FEED and address is not None:
        for key, value in (("host", address.host), ("port", address.port), ("db", address.db),
                           ("password", address.password)):
            if value is not None:
                config.setdefault(key, value)
    return config


def spec_from_row(row: MarketRow, settings: Settings, feeds: Mapping[str, Any] | None = None) -> MarketSpec:
    """The :class:`mmframe.MarketSpec` of *row*: its market, its strategy with its effective config, its feed
    (:func:`choose_feed`) and the engine options of its ``mmframe_market.options`` (:data:`MarketOptions`)."""
    if row.error:
        raise ConfigError(row.error)
    if row.strategy_name is None:
        raise ConfigError(f"strategy_currency.default_strategy {row.strategy_id} names no strategy_strategy row")
    market = market_from_row(row)
    options_data = row.description.options if row.description is not None else {}
    options = structure_config(options_data or {}, MarketOptions)
    feed, feed_config, index_symbol = choose_feed(row, options, settings, feeds)
    for number, source in enumerate(options.index_sources):
        if source.feed == BUS_FEED and not source.feed_config.get("exchange"):
            raise ConfigError(f"index_sources[{number}]: a redis source needs feed_config.exchange, the bus channels "
                              "to follow (price:update:{exchange}:{symbol})")
    if feed == BUS_FEED and not feed_config.get("exchange"):
        raise ConfigError("the redis feed needs the exchange whose bus channels to follow "
                          "(price:update:{exchange}:{symbol}): set external_exchange in the strategy config, "
                          "MMFRAME_EXCHANGE, or feed_config.exchange")
    sources = tuple(
        attrs.evolve(source, feed_config=bus_defaults(source.feed, source.feed_config, settings))
        for source in options.index_sources
    )
    values = {
        **attrs.asdict(options, recurse=False),
        "feed": feed,
        "feed_config": feed_config,
        "index_symbol": index_symbol,
        "index_sources": sources,
    }
    return MarketSpec(
        market=market, strategy=row.strategy_name, strategy_config=row.effective_config, name=row.id, **values
    )


def check_feeds(spec: MarketSpec, feeds: Mapping[str, Any]) -> None:
    """Refuse a feed (the market's own, or an index source's) that is not installed, or options it would refuse,
    before anything starts."""
    for name, config in [(spec.feed, spec.feed_config), *((s.feed, s.feed_config) for s in spec.index_sources)]:
        if name not in feeds:
            installed = ", ".join(sorted(feeds))
            close = difflib.get_close_matches(name, list(feeds), n=1, cutoff=0.75)
            if close:  # a typo: pointing at a distribution named after it would invite installing anyone's package
                raise ConfigError(f"feed {name!r} is not installed; did you mean {close[0]!r}? (installed feeds: "
                                  f"{installed})")
            raise ConfigError(
                f"feed {name!r} is not installed (pip install mmframe-{name}, or set MARKET_REDIS_HOST to follow "
                f"the Redis bus); installed feeds: {installed}"
            )
        try:
            structure_config(config, feeds[name].Config)
        except ConfigError as exc:
            raise ConfigError(f"feed {name!r}: {exc}") from None
