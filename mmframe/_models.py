"""The messages and records that cross mmframe's tasks, and exact price/quantity arithmetic.

Every price and quantity is a :class:`~decimal.Decimal`. A :class:`Market` knows its tick grid and its
quantity precision and is the only place where rounding happens: bids round *down* to the tick grid, asks
round *up* (a quote is never made more aggressive by rounding), quantities round *down* to the precision
(we never offer more than we meant to). Decimals cross process boundaries as strings (see ``_convert``).
"""

from __future__ import annotations

import enum
import functools
import time
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any

import attrs

from ._validators import above_zero

__all__ = [
    "TERMINAL_STATUSES",
    "DepthSnapshot",
    "Fill",
    "Liquidity",
    "Market",
    "MarketData",
    "MarketKey",
    "MarketType",
    "Order",
    "OrderEvent",
    "OrderEventKind",
    "OrderRequest",
    "OrderStatus",
    "OrderType",
    "PriceTick",
    "Quote",
    "Side",
    "Trade",
    "to_decimal",
]


def to_decimal(value: object, *, name: str = "value") -> Decimal:
    """Convert *value* to a finite :class:`Decimal` exactly as written.

    Strings and ints convert exactly; floats convert through their shortest repr (``0.1`` → ``Decimal("0.1")``,
    not the binary expansion). ``bool``, NaN and infinities are rejected with :class:`ValueError`.
    """
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, bool):
        raise ValueError(f"{name} must be a number, not a boolean")
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        result = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"{name} is not a decimal number: {value!r}") from None
    else:
        raise ValueError(f"{name} must be a decimal number, not {type(value).__name__}")
    if not result.is_finite():
        raise ValueError(f"{name} must be finite, got {value!r}")
    return result


class Side(enum.StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        """+1 for a buy, -1 for a sell: the sign of the position change a fill of this side makes."""
        return 1 if self is Side.BUY else -1

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(enum.StrEnum):
    """How an order meets the book.

    ``limit`` rests what it does not fill; ``post_only`` is rejected rather than take liquidity; ``ioc`` fills
    what it can at its limit and expires the rest; ``market`` takes at any price and expires the rest.
    """

    LIMIT = "limit"
    MARKET = "market"
    IOC = "ioc"
    POST_ONLY = "post_only"


class MarketType(enum.IntEnum):
    """The seed's ``strategy_currency.market_type``: 1 spot, 2 margin."""

    SPOT = 1
    MARGIN = 2


class OrderStatus(enum.StrEnum):
    NEW = "new"
    PENDING = "pending"
    OPEN = "open"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    EXPIRED = "expired"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES

    @property
    def is_live(self) -> bool:
        """True while the order may still rest on, or be about to reach, the book."""
        return self in (OrderStatus.PENDING, OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)


TERMINAL_STATUSES = frozenset(
    {OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED, OrderStatus.EXPIRED}
)


class OrderEventKind(enum.StrEnum):
    ACCEPTED = "accepted"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    EXPIRED = "expired"
    #: The order's price and/or quantity changed in place (``price`` and ``quantity`` say to what); its status is
    #: unchanged.
    AMENDED = "amended"
    #: An amend was refused (``reason`` says why): the order stands as it was before the amend was sent.
    AMEND_REJECTED = "amend_rejected"


class Liquidity(enum.StrEnum):
    MAKER = "maker"
    TAKER = "taker"


@attrs.frozen(order=True)
class MarketKey:
    """Identifies one market: the seed's ``(symbol, market_type)``. One task tree runs per key."""

    symbol: str
    market_type: MarketType = MarketType.SPOT

    def __str__(self) -> str:
        return f"{self.symbol}:{self.market_type.name.lower()}"


def _precision(instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if not 0 <= value <= 18:
        raise ValueError(f"{attribute.name} must be between 0 and 18, got {value}")


@functools.cache
def _unit(places: int) -> Decimal:
    """``10 ** -places`` as a Decimal (``Decimal("0.01")`` for 2), made once per precision: the rounding and grid
    checks ask for it for every quote."""
    return Decimal(1).scaleb(-places)


def _decimal_field(**kwargs: Any) -> Any:
    return attrs.field(converter=to_decimal, **kwargs)


@attrs.frozen
class Market:
    """A market's static description: where prices may sit and how finely quantities are counted.

    :param symbol: the local symbol on our match engine, e.g. ``"BTC/USDT"``.
    :param tick_size: the price grid step; every price on the wire is a multiple of it.
    :param price_precision: decimal places of a price on the wire (``tick_size`` must fit in it).
    :param quantity_precision: decimal places of a quantity; quantities round down to ``10**-quantity_precision``.
    :param min_quantity: the smallest order quantity the engine accepts.
    """

    symbol: str
    tick_size: Decimal = _decimal_field(validator=above_zero)
    price_precision: int = attrs.field(validator=_precision)
    quantity_precision: int = attrs.field(validator=_precision)
    min_quantity: Decimal = _decimal_field(default=Decimal(0))
    market_type: MarketType = attrs.field(default=MarketType.SPOT, converter=MarketType)
    base_asset: str = ""
    quote_asset: str = ""

    def __attrs_post_init__(self) -> None:
        if not self.symbol:
            raise ValueError("symbol must not be empty")
        if self.tick_size != self.tick_size.quantize(self.price_step):
            raise ValueError(
                f"tick_size {self.tick_size} has more decimal places than price_precision {self.price_precision}"
            )
        if self.min_quantity < 0:
            raise ValueError(f"min_quantity must not be negative, got {self.min_quantity}")
        if not self.base_asset and "/" in self.symbol:
            base, _, quote = self.symbol.partition("/")
            object.__setattr__(self, "base_asset", base)
            object.__setattr__(self, "quote_asset", quote)

    @property
    def key(self) -> MarketKey:
        return MarketKey(self.symbol, self.market_type)

    @property
    def price_step(self) -> Decimal:
        return _unit(self.price_precision)

    @property
    def quantity_step(self) -> Decimal:
        return _unit(self.quantity_precision)

    def _to_grid(self, price: Decimal, rounding: str) -> Decimal:
        ticks = (to_decimal(price, name="price") / self.tick_size).to_integral_value(rounding=rounding)
        return (ticks * self.tick_size).quantize(self.price_step)

    def floor_price(self, price: Decimal | float | str) -> Decimal:
        """The highest grid price ≤ *price*."""
        return self._to_grid(to_decimal(price, name="price"), ROUND_FLOOR)

    def ceil_price(self, price: Decimal | float | str) -> Decimal:
        """The lowest grid price ≥ *price*."""
        return self._to_grid(to_decimal(price, name="price"), ROUND_CEILING)

    def round_price(self, price: Decimal | float | str, side: Side) -> Decimal:
        """Put *price* on the tick grid, never more aggressively: a bid rounds down, an ask rounds up."""
        return self.floor_price(price) if side is Side.BUY else self.ceil_price(price)

    def round_quantity(self, quantity: Decimal | float | str) -> Decimal:
        """Round *quantity* down to the market's quantity precision."""
        return to_decimal(quantity, name="quantity").quantize(self.quantity_step, rounding=ROUND_FLOOR)

    def is_on_grid(self, price: Decimal) -> bool:
        return price % self.tick_size == 0 and price == price.quantize(self.price_step)

    def is_valid_quantity(self, quantity: Decimal) -> bool:
        return quantity > 0 and quantity == quantity.quantize(self.quantity_step) and quantity >= self.min_quantity


@attrs.frozen
class Quote:
    """One order a strategy wants resting on the book: the unit of a strategy's *desired* book.

    The reconciler keeps a live order that matches a quote within tolerance and places the rest.
    ``price`` and ``quantity`` must already be on the market's grid (use :meth:`Market.round_price`).
    """

    side: Side
    price: Decimal = _decimal_field()
    quantity: Decimal = _decimal_field()
    type: OrderType = OrderType.LIMIT
    tag: str = ""
    size_variation: Decimal = _decimal_field(default=Decimal(0))
    """Up to this fraction is taken off the quantity at random when the order is *placed* (the seed's size
    variation); a resting order within that fraction of ``quantity`` still stands for this quote."""

    def __attrs_post_init__(self) -> None:
        if not 0 <= self.size_variation < 1:
            raise ValueError(f"size_variation must be in [0, 1), got {self.size_variation}")


@attrs.frozen
class OrderRequest:
    """An order as sent to an :class:`~mmframe.protocols.OrderSink`.

    ``client_order_id`` is unique per instance and carries the market's prefix, so a restarted process can find
    what it left behind, and a retried request can never create a second order.
    """

    client_order_id: str
    symbol: str
    side: Side
    type: OrderType
    quantity: Decimal = _decimal_field()
    price: Decimal | None = attrs.field(default=None, converter=attrs.converters.optional(to_decimal))
    market_type: MarketType = MarketType.SPOT
    tag: str = ""

    def __attrs_post_init__(self) -> None:
        if self.type is not OrderType.MARKET and self.price is None:
            raise ValueError(f"a {self.type} order needs a price")
        if self.quantity <= 0:
            raise ValueError(f"quantity must be positive, got {self.quantity}")


@attrs.frozen
class AmendRequest:
    """A change of one resting order, as sent to a sink that can amend (:class:`~mmframe.protocols.AmendsOrders`).

    ``price`` is the order's new price and ``quantity`` its new *total* quantity (what has filled included, as the
    order's ``quantity`` counts it): both absolute, so sending the same amend twice changes nothing the second
    time. A smaller quantity at the same price keeps the order's place in the queue; anything else moves it to the
    back of its new price level.
    """

    client_order_id: str
    symbol: str
    price: Decimal = _decimal_field(validator=above_zero)
    quantity: Decimal = _decimal_field(validator=above_zero)


@attrs.frozen(hash=False)
class Order:
    """An order as the market's order tracker knows it: the tracker's own record of the order, one object for the
    order's whole life, which the tracker updates in place as the order moves (a transition allocates nothing).

    Read-only to everyone else — setting a field raises :class:`attrs.exceptions.FrozenInstanceError` — and
    current: an ``Order`` a strategy or a hook was handed shows the order's state *now*, not as it was when it was
    handed over. To keep a state, copy it: ``attrs.evolve(order)``. Orders compare by value and are not hashable
    (a record that changes must not be a set member or a dict key; key by ``client_order_id``).
    """

    __hash__ = None  # type: ignore[assignment]  # updated in place: never a set member or a dict key

    request: OrderRequest
    status: OrderStatus = OrderStatus.NEW
    filled_quantity: Decimal = Decimal(0)
    average_price: Decimal | None = None
    order_id: str | None = None
    reason: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0
    cancel_requested: bool = False

    @property
    def client_order_id(self) -> str:
        return self.request.client_order_id

    @property
    def side(self) -> Side:
        return self.request.side

    @property
    def price(self) -> Decimal | None:
        return self.request.price

    @property
    def quantity(self) -> Decimal:
        return self.request.quantity

    @property
    def remaining_quantity(self) -> Decimal:
        return self.request.quantity - self.filled_quantity


@attrs.frozen
class Fill:
    """One execution of one of our orders."""

    trade_id: str
    client_order_id: str
    symbol: str
    side: Side
    price: Decimal = _decimal_field()
    quantity: Decimal = _decimal_field()
    liquidity: Liquidity = Liquidity.MAKER
    fee: Decimal = _decimal_field(default=Decimal(0))
    timestamp: float = attrs.field(factory=time.time)


@attrs.frozen
class OrderEvent:
    """Something the sink tells us about one of our orders.

    ``filled_quantity`` is cumulative; a ``partially_filled`` or ``filled`` event carries the ``fill`` that caused
    it. ``cancelled``, ``expired``, ``rejected`` and ``amend_rejected`` carry a ``reason``; ``amended`` carries the
    order's new ``price`` and (total) ``quantity``.
    """

    kind: OrderEventKind
    client_order_id: str
    symbol: str
    filled_quantity: Decimal = _decimal_field(default=Decimal(0))
    order_id: str | None = None
    fill: Fill | None = None
    reason: str = ""
    timestamp: float = attrs.field(factory=time.time)
    price: Decimal | None = attrs.field(default=None, converter=attrs.converters.optional(to_decimal))
    quantity: Decimal | None = attrs.field(default=None, converter=attrs.converters.optional(to_decimal))


@attrs.frozen
class PriceTick:
    """An index price from an exchange feed. ``timestamp`` (epoch seconds) is when the price was observed: the
    receive time for a WebSocket feed, the publisher's time on the Redis bus. The engine rejects a tick whose
    timestamp is already older than the market's ``stale_after``.

    Building one refuses a non-finite or non-positive price, so a bad tick never gets past the feed.
    """

    exchange: str
    symbol: str
    price: Decimal = _decimal_field(validator=above_zero)  # to_decimal refuses NaN and infinities
    timestamp: float = attrs.field(factory=time.time)
    bid: Decimal | None = attrs.field(default=None, converter=attrs.converters.optional(to_decimal))
    ask: Decimal | None = attrs.field(default=None, converter=attrs.converters.optional(to_decimal))


def _levels(value: object) -> tuple[tuple[Decimal, Decimal], ...]:
    if not isinstance(value, list | tuple):
        raise ValueError("depth levels must be a list of [price, quantity]")
    out = []
    for level in value:
        price, qty = level
        out.append((to_decimal(price, name="price"), to_decimal(qty, name="quantity")))
    return tuple(out)


@attrs.frozen
class DepthSnapshot:
    """The top of a book: ``bids`` best (highest) first, ``asks`` best (lowest) first, as (price, quantity)."""

    exchange: str
    symbol: str
    bids: tuple[tuple[Decimal, Decimal], ...] = attrs.field(converter=_levels, default=())
    asks: tuple[tuple[Decimal, Decimal], ...] = attrs.field(converter=_levels, default=())
    sequence: int = 0
    timestamp: float = attrs.field(factory=time.time)

    @property
    def best_bid(self) -> Decimal | None:
        return self.bids[0][0] if self.bids else None

    @property
    def best_ask(self) -> Decimal | None:
        return self.asks[0][0] if self.asks else None

    @property
    def mid(self) -> Decimal | None:
        if self.bids and self.asks:
            return (self.bids[0][0] + self.asks[0][0]) / 2
        return None


@attrs.frozen
class Trade:
    """A trade printed on an exchange's public tape (anyone's, not ours: ours are :class:`Fill`).

    ``side`` is the aggressor's: ``BUY`` when a buyer lifted an ask, ``SELL`` when a seller hit a bid (Binance's
    ``is_buyer_maker`` true is a ``SELL``). ``timestamp`` (epoch seconds) is the trade's time on the exchange.
    Building one refuses a non-finite or non-positive price or quantity.
    """

    exchange: str
    symbol: str
    price: Decimal = _decimal_field(validator=above_zero)
    quantity: Decimal = _decimal_field(validator=above_zero)
    side: Side = attrs.field(converter=Side)
    timestamp: float = attrs.field(factory=time.time)
    trade_id: str = ""


MarketData = PriceTick | DepthSnapshot | Trade
