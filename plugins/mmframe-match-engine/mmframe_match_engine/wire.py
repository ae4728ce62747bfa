"""The JSON wire format of the match-engine API (``docs/match-engine-api.md``), shared by the reference engine
(:mod:`.server`) and the ``match-engine`` sink (:mod:`.sink`).

Every ``*_from_wire`` function validates what it reads and raises :class:`WireError` naming the offending field
(``orders[3].price: not a decimal string: 12.5``); every ``*_to_wire`` function produces exactly the contract's
shapes. Decimals travel as plain-notation strings (``"0.0100"``, never ``"1E-2"``); a JSON number where a decimal
is expected is refused. Parse bodies with :func:`json_loads` so that a JSON number arrives as a
:class:`~decimal.Decimal` (and is then refused as "not a decimal string" with the number as written) rather than
as a float rounded on the way.

JSON is read and written with ``msgspec`` (:func:`json_loads`, :func:`json_dumps`): the standard library's encoder
was the largest single item of the reference engine's profile (issue 15). The bytes differ from ``json.dumps``'s
only where JSON allows (no spaces, UTF-8 instead of ``\\u`` escapes, ``1e16`` rather than ``1e+16``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import attrs
import msgspec

from mmframe import (
    AmendRequest,
    Fill,
    Liquidity,
    Order,
    OrderEvent,
    OrderEventKind,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
)

__all__ = [
    "CLIENT_ORDER_ID_PATTERN",
    "EVENT_KINDS",
    "MAX_AMENDS",
    "MAX_BATCH_ORDERS",
    "ORDER_STATUSES",
    "WireAmend",
    "WireError",
    "WireOrder",
    "account_from_wire",
    "amends_from_wire",
    "amends_to_wire",
    "decimal_from_wire",
    "decimal_to_wire",
    "default_account",
    "error_body",
    "event_account",
    "event_from_wire",
    "event_to_wire",
    "json_dumps",
    "json_loads",
    "request_from_wire",
    "request_to_wire",
    "symbol_from_wire",
    "type_from_wire",
    "type_to_wire",
]

#: The most orders one ``POST /api/v1/orders/batch`` may carry (more: 413 ``too_large``).
MAX_BATCH_ORDERS = 100
#: The most amends one ``POST /api/v1/orders/amend`` may carry (more: 413 ``too_large``).
MAX_AMENDS = 100
#: A client order id (and an account): 1 to 64 characters of ``[A-Za-z0-9._:-]``.
CLIENT_ORDER_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,64}")
#: The order statuses of the contract (mmframe's ``new`` and ``pending`` never cross the wire).
ORDER_STATUSES = frozenset(
    {
        OrderStatus.OPEN,
        OrderStatus.PARTIALLY_FILLED,
        OrderStatus.FILLED,
        OrderStatus.CANCELLED,
        OrderStatus.REJECTED,
        OrderStatus.EXPIRED,
    }
)
#: The kinds of stream events (a rejected order produces none: its batch result says so; nor does a refused amend,
#: so ``amend_rejected`` never crosses the wire).
EVENT_KINDS = frozenset(
    {
        OrderEventKind.ACCEPTED,
        OrderEventKind.PARTIALLY_FILLED,
        OrderEventKind.FILLED,
        OrderEventKind.CANCELLED,
        OrderEventKind.EXPIRED,
        OrderEventKind.AMENDED,
    }
)
_FILL_KINDS = frozenset({OrderEventKind.PARTIALLY_FILLED, OrderEventKind.FILLED})

_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_MAX_DECIMAL_CHARS = 64
_MAX_ADJUSTED_EXPONENT = 100  # |exponent| beyond this is refused: arithmetic on it could overflow
_MAX_SYMBOL_CHARS = 64
_MAX_REASON_CHARS = 1000
# Strings already read, and what they were read as: prices, quantities and symbols repeat from order to order, and a
# dict lookup is a tenth of the checks (only strings that passed them are kept; cleared when full).
_CACHE_SIZE = 4096
_DECIMALS: dict[str, Decimal] = {}
_SYMBOLS: set[str] = set()
# enum members by their value: a dict lookup instead of an Enum call (only strings are looked up)
_SIDES = {side.value: side for side in Side}
_STATUSES = {status.value: status for status in ORDER_STATUSES}
_KINDS = {kind.value: kind for kind in EVENT_KINDS}

# mmframe's order type <-> the contract's (type, time_in_force, post_only)
_TYPE_TO_WIRE: dict[OrderType, tuple[str, str, bool]] = {
    OrderType.LIMIT: ("limit", "gtc", False),
    OrderType.IOC: ("limit", "ioc", False),
    OrderType.POST_ONLY: ("limit", "gtc", True),
    OrderType.MARKET: ("market", "ioc", False),
}


class WireError(ValueError):
    """A request or response that does not follow the contract; the message names the field."""


# ---------------------------------------------------------------------------------------------------------------
# Scalars
# ---------------------------------------------------------------------------------------------------------------


_DECODER = msgspec.json.Decoder(float_hook=Decimal)
_ENCODER = msgspec.json.Encoder()


def json_loads(data: str | bytes) -> Any:
    """Parse JSON with numbers that have a fraction or exponent as :class:`Decimal` (so a number sent where a
    decimal string belongs is refused as written) and ``NaN``/``Infinity`` refused. Raises :class:`WireError`."""
    try:
        return _DECODER.decode(data)
    except (ValueError, RecursionError) as exc:  # msgspec.DecodeError and UnicodeError are ValueErrors
        raise WireError(f"malformed JSON: {exc}") from None


def json_dumps(data: Any) -> bytes:
    """*data* (dicts, lists, strings, numbers, booleans, ``None``) as compact JSON in UTF-8."""
    return _ENCODER.encode(data)


def _show(value: object) -> str:
    """*value* as it appeared on the wire, shortened."""
    if isinstance(value, Decimal | int | float) and not isinstance(value, bool):
        text = str(value)
    else:
        try:
            text = json.dumps(value, default=str)
        except (TypeError, ValueError):
            text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def decimal_from_wire(value: object, field: str) -> Decimal:
    """A decimal string (``"60000.10"``) as an exact :class:`Decimal`.

    Refuses everything else with :class:`WireError`: JSON numbers, booleans, ``null``, ``"NaN"``, ``"Infinity"``,
    whitespace, digit separators and absurd exponents. The sign is not checked here (callers do).
    """
    if not isinstance(value, str):
        raise WireError(f"{field}: not a decimal string: {_show(value)}")
    cached = _DECIMALS.get(value)
    if cached is not None:
        return cached
    if len(value) > _MAX_DECIMAL_CHARS or not _DECIMAL.fullmatch(value):
        raise WireError(f"{field}: not a decimal string: {_show(value)}")
    try:
        result = Decimal(value)
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid literals
        raise WireError(f"{field}: not a decimal string: {_show(value)}") from None
    if result and abs(result.adjusted()) > _MAX_ADJUSTED_EXPONENT:
        raise WireError(f"{field}: decimal out of range: {_show(value)}")
    if len(_DECIMALS) >= _CACHE_SIZE:
        _DECIMALS.clear()
    _DECIMALS[value] = result
    return result


def decimal_to_wire(value: Decimal) -> str:
    """A :class:`Decimal` as the contract's plain-notation string (``Decimal("1E-8")`` → ``"0.00000001"``)."""
    # str() is plain notation unless the exponent is positive or the value is below 1E-6, and five times faster
    # than format(); those few go through format().
    text = str(value)
    return text if "E" not in text else format(value, "f")


def _positive(value: object, field: str) -> Decimal:
    result = decimal_from_wire(value, field)
    if result <= 0:
        raise WireError(f"{field}: must be positive, got {_show(value)}")
    return result


def _non_negative(value: object, field: str) -> Decimal:
    result = decimal_from_wire(value, field)
    if result < 0:
        raise WireError(f"{field}: must not be negative, got {_show(value)}")
    return result


def _object(data: object, field: str) -> Mapping[str, Any]:
    if not isinstance(data, dict):
        raise WireError(f"{field}: must be a JSON object, got {_show(data)}")
    return data


def _required(data: Mapping[str, Any], key: str, field: str) -> Any:
    if key not in data:
        raise WireError(f"{field}.{key}: required")
    return data[key]


def _string(data: Mapping[str, Any], key: str, field: str, *, max_chars: int = _MAX_SYMBOL_CHARS) -> str:
    value = _required(data, key, field)
    if not isinstance(value, str):
        raise WireError(f"{field}.{key}: must be a string, got {_show(value)}")
    if len(value) > max_chars:
        raise WireError(f"{field}.{key}: longer than {max_chars} characters")
    return value


def _identifier(data: Mapping[str, Any], key: str, field: str) -> str:
    value = _required(data, key, field)
    if not isinstance(value, str) or not CLIENT_ORDER_ID_PATTERN.fullmatch(value):
        raise WireError(f"{field}.{key}: must be 1 to 64 characters of [A-Za-z0-9._:-], got {_show(value)}")
    return value


def default_account(client_order_id: str) -> str:
    """The account a request that names none acts for: the client id's (or prefix's) part before its first ``-``,
    the whole id if it has none."""
    return client_order_id.partition("-")[0] or client_order_id


def account_from_wire(value: object, field: str) -> str:
    """An account: 1 to 64 characters of ``[A-Za-z0-9._:-]`` (like a client order id)."""
    if not isinstance(value, str) or not CLIENT_ORDER_ID_PATTERN.fullmatch(value):
        raise WireError(f"{field}: must be 1 to 64 characters of [A-Za-z0-9._:-], got {_show(value)}")
    return value


def symbol_from_wire(value: object, field: str) -> str:
    """A symbol (``"BTC/USDT"``): a non-empty string of at most 64 printable characters without whitespace."""
    if isinstance(value, str) and value in _SYMBOLS:
        return value
    if (
        not isinstance(value, str)
        or not value
        or len(value) > _MAX_SYMBOL_CHARS
        or not value.isprintable()
        or any(c.isspace() for c in value)
    ):
        raise WireError(f"{field}: must be a non-empty symbol without spaces, got {_show(value)}")
    if len(_SYMBOLS) >= _CACHE_SIZE:
        _SYMBOLS.clear()
    _SYMBOLS.add(value)
    return value


def _symbol(data: Mapping[str, Any], field: str) -> str:
    return symbol_from_wire(_required(data, "symbol", field), f"{field}.symbol")


def _side(data: Mapping[str, Any], field: str) -> Side:
    value = _required(data, "side", field)
    side = _SIDES.get(value) if isinstance(value, str) else None
    if side is None:
        raise WireError(f'{field}.side: must be "buy" or "sell", got {_show(value)}')
    return side


def _reason(data: Mapping[str, Any], field: str) -> str:
    value = data.get("reason", "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise WireError(f"{field}.reason: must be a string, got {_show(value)}")
    return value[:_MAX_REASON_CHARS]


def _status(data: Mapping[str, Any], field: str) -> OrderStatus:
    value = _required(data, "status", field)
    status = _STATUSES.get(value) if isinstance(value, str) else None
    if status is None:
        allowed = ", ".join(sorted(ORDER_STATUSES))
        raise WireError(f"{field}.status: must be one of {allowed}, got {_show(value)}")
    return status


def type_to_wire(order_type: OrderType) -> tuple[str, str, bool]:
    """mmframe's order type as the contract's ``(type, time_in_force, post_only)``."""
    return _TYPE_TO_WIRE[order_type]


def type_from_wire(data: Mapping[str, Any], field: str) -> OrderType:
    """The mmframe order type of an order object's ``type``, ``time_in_force`` and ``post_only``.

    ``type`` is required; ``time_in_force`` defaults to ``ioc`` for a market order and ``gtc`` otherwise,
    ``post_only`` to ``false``. Refuses a market order that is not ``ioc`` or is ``post_only``, and a
    ``post_only`` order that is ``ioc``.
    """
    kind = _required(data, "type", field)
    if kind not in ("limit", "market"):
        raise WireError(f'{field}.type: must be "limit" or "market", got {_show(kind)}')
    tif = data.get("time_in_force")
    if tif is None:
        tif = "ioc" if kind == "market" else "gtc"
    if tif not in ("gtc", "ioc"):
        raise WireError(f'{field}.time_in_force: must be "gtc" or "ioc", got {_show(tif)}')
    post_only = data.get("post_only")
    if post_only is None:
        post_only = False
    if not isinstance(post_only, bool):
        raise WireError(f"{field}.post_only: must be true or false, got {_show(post_only)}")
    if kind == "market":
        if tif != "ioc":
            raise WireError(f"{field}.time_in_force: a market order is always ioc, got {_show(tif)}")
        if post_only:
            raise WireError(f"{field}.post_only: a market order cannot be post_only")
        return OrderType.MARKET
    if post_only:
        if tif != "gtc":
            raise WireError(f"{field}.post_only: a post_only order must be gtc, got time_in_force {_show(tif)}")
        return OrderType.POST_ONLY
    return OrderType.IOC if tif == "ioc" else OrderType.LIMIT


def _price(data: Mapping[str, Any], order_type: OrderType, field: str) -> Decimal | None:
    value = data.get("price")
    if order_type is OrderType.MARKET:
        if value is not None:
            raise WireError(f"{field}.price: a market order has no price (must be null), got {_show(value)}")
        return None
    if value is None:
        raise WireError(f"{field}.price: required for a limit order")
    return _positive(value, f"{field}.price")


# ---------------------------------------------------------------------------------------------------------------
# Orders
# ---------------------------------------------------------------------------------------------------------------


@attrs.frozen
class WireOrder:
    """The contract's order object. ``type`` is mmframe's order type (``limit``, ``market``, ``ioc``,
    ``post_only``); on the wire it becomes ``type``/``time_in_force``/``post_only``."""

    client_order_id: str
    account: str
    order_id: str
    symbol: str
    side: Side
    type: OrderType
    price: Decimal | None
    quantity: Decimal
    filled_quantity: Decimal
    filled_notional: Decimal
    status: OrderStatus
    reason: str = ""
    amends: int = 0  # amends that changed the order: of two reports of it, the one with more is the later

    @property
    def average_price(self) -> Decimal | None:
        return self.filled_notional / self.filled_quantity if self.filled_quantity else None

    @property
    def is_open(self) -> bool:
        return self.status in (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)

    def to_wire(self) -> dict[str, Any]:
        kind, tif, post_only = type_to_wire(self.type)
        return {
            "client_order_id": self.client_order_id,
            "account": self.account,
            "order_id": self.order_id,
            "symbol": self.symbol,
            "side": str(self.side),
            "type": kind,
            "time_in_force": tif,
            "post_only": post_only,
            "price": None if self.price is None else decimal_to_wire(self.price),
            "quantity": decimal_to_wire(self.quantity),
            "filled_quantity": decimal_to_wire(self.filled_quantity),
            "filled_notional": decimal_to_wire(self.filled_notional),
            "status": str(self.status),
            "reason": self.reason,
            "amends": self.amends,
        }

    @classmethod
    def from_wire(cls, data: object, field: str = "order") -> WireOrder:
        obj = _object(data, field)
        order_type = type_from_wire(obj, field)
        order_id = _required(obj, "order_id", field)
        if not isinstance(order_id, str):
            raise WireError(f"{field}.order_id: must be a string, got {_show(order_id)}")
        account = _string(obj, "account", field)
        return cls(
            client_order_id=_identifier(obj, "client_order_id", field),
            account=account,
            order_id=order_id,
            symbol=_symbol(obj, field),
            side=_side(obj, field),
            type=order_type,
            price=_price(obj, order_type, field),
            quantity=_positive(_required(obj, "quantity", field), f"{field}.quantity"),
            filled_quantity=_non_negative(_required(obj, "filled_quantity", field), f"{field}.filled_quantity"),
            filled_notional=_non_negative(_required(obj, "filled_notional", field), f"{field}.filled_notional"),
            status=_status(obj, field),
            reason=_reason(obj, field),
            amends=amends_of(obj, field),
        )

    def to_request(self) -> OrderRequest:
        return OrderRequest(
            client_order_id=self.client_order_id,
            symbol=self.symbol,
            side=self.side,
            type=self.type,
            quantity=self.quantity,
            price=self.price,
        )

    def to_order(self) -> Order:
        """The order as mmframe's :class:`~mmframe.Order` (``request`` rebuilt from the wire fields)."""
        return Order(
            request=self.to_request(),
            status=self.status,
            filled_quantity=self.filled_quantity,
            average_price=self.average_price,
            order_id=self.order_id,
            reason=self.reason,
        )


def request_to_wire(request: OrderRequest, account: str) -> dict[str, Any]:
    """An :class:`OrderRequest` as one entry of a ``POST /api/v1/orders/batch`` body."""
    kind, tif, post_only = type_to_wire(request.type)
    return {
        "client_order_id": request.client_order_id,
        "account": account,
        "symbol": request.symbol,
        "side": str(request.side),
        "type": kind,
        "time_in_force": tif,
        "post_only": post_only,
        "price": None if request.price is None else decimal_to_wire(request.price),
        "quantity": decimal_to_wire(request.quantity),
    }


def request_from_wire(data: object, field: str) -> tuple[OrderRequest, str]:
    """One batch entry as ``(request, account)``; validates every field (see the contract).

    ``account`` defaults to the client id's part before its first ``-`` (the whole id if it has none).
    Fields the contract does not define are ignored.
    """
    obj = _object(data, field)
    client_order_id = _identifier(obj, "client_order_id", field)
    raw_account = obj.get("account")
    account = default_account(client_order_id) if raw_account is None else _identifier(obj, "account", field)
    symbol = _symbol(obj, field)
    side = _side(obj, field)
    order_type = type_from_wire(obj, field)
    price = _price(obj, order_type, field)
    quantity = _positive(_required(obj, "quantity", field), f"{field}.quantity")
    request = OrderRequest(
        client_order_id=client_order_id,
        symbol=symbol,
        side=side,
        type=order_type,
        quantity=quantity,
        price=price,
    )
    return request, account


# ---------------------------------------------------------------------------------------------------------------
# Amends
# ---------------------------------------------------------------------------------------------------------------


@attrs.frozen
class WireAmend:
    """One entry of a ``POST /api/v1/orders/amend`` body: the order's new ``price`` and new *total* ``quantity``,
    ``None`` for what stays as it is (at least one is given)."""

    client_order_id: str
    price: Decimal | None
    quantity: Decimal | None


def amends_to_wire(symbol: str, account: str, amends: Sequence[AmendRequest]) -> dict[str, Any]:
    """A ``POST /api/v1/orders/amend`` body of *account*'s *amends* of *symbol*'s orders."""
    return {
        "symbol": symbol,
        "account": account,
        "amends": [
            {
                "client_order_id": amend.client_order_id,
                "price": decimal_to_wire(amend.price),
                "quantity": decimal_to_wire(amend.quantity),
            }
            for amend in amends
        ],
    }


def _amend_from_wire(data: object, field: str) -> WireAmend:
    obj = _object(data, field)
    client_order_id = _identifier(obj, "client_order_id", field)
    price, quantity = obj.get("price"), obj.get("quantity")
    if price is None and quantity is None:
        raise WireError(f"{field}: price or quantity required (at least one)")
    return WireAmend(
        client_order_id=client_order_id,
        price=None if price is None else _positive(price, f"{field}.price"),
        quantity=None if quantity is None else _positive(quantity, f"{field}.quantity"),
    )


def amends_from_wire(data: object, field: str = "amends") -> list[WireAmend]:
    """The ``amends`` list of an amend body, every entry validated (see the contract): a client id may appear
    once. The caller checks its length against :data:`MAX_AMENDS` first (too many is a 413, not a 400)."""
    if not isinstance(data, list):
        raise WireError(f"{field}: must be a list of amends")
    out: list[WireAmend] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(data):
        amend = _amend_from_wire(entry, f"{field}[{i}]")
        first = seen.setdefault(amend.client_order_id, i)
        if first != i:
            raise WireError(
                f"{field}[{i}].client_order_id: {_show(amend.client_order_id)} is amended twice "
                f"(also {field}[{first}]); one amend per order and request"
            )
        out.append(amend)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Stream events
# ---------------------------------------------------------------------------------------------------------------


def event_to_wire(
    event: OrderEvent, side: Side, status: OrderStatus, account: str | None = None
) -> dict[str, Any]:
    """An :class:`OrderEvent` as the contract's ``event`` object; *side* is the order's side, *status* its status
    after this event, *account* whose order it is (included when given). ``fill`` is included when the event
    carries one; an ``amended`` event carries the order's new ``price`` and ``quantity`` (required on it)."""
    out: dict[str, Any] = {
        "kind": str(event.kind),
        "client_order_id": event.client_order_id,
    }
    if account is not None:
        out["account"] = account
    out |= {
        "order_id": event.order_id,
        "symbol": event.symbol,
        "side": str(side),
        "status": str(status),
        "filled_quantity": decimal_to_wire(event.filled_quantity),
        "reason": event.reason,
        "timestamp": event.timestamp,
    }
    if event.fill is not None:
        out["fill"] = {
            "trade_id": event.fill.trade_id,
            "price": decimal_to_wire(event.fill.price),
            "quantity": decimal_to_wire(event.fill.quantity),
            "liquidity": str(event.fill.liquidity),
        }
    if event.kind is OrderEventKind.AMENDED:
        if event.price is None or event.quantity is None:
            raise ValueError(f"an amended event carries the new price and quantity, got {event!r}")
        out["price"] = decimal_to_wire(event.price)
        out["quantity"] = decimal_to_wire(event.quantity)
    return out


def amends_of(obj: dict[str, Any], field: str) -> int:
    """The ``amends`` count of an order or ``amended`` event object (0 when an engine does not say)."""
    value = obj.get("amends", 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise WireError(f"{field}.amends: must be a non-negative integer, got {_show(value)}")
    return value


def event_account(data: object) -> str | None:
    """The ``account`` of the contract's ``event`` object (whose order it is), ``None`` if the engine did not say."""
    obj = _object(data, "event")
    value = obj.get("account")
    return None if value is None else account_from_wire(value, "event.account")


def event_from_wire(data: object) -> tuple[OrderEvent, Side, OrderStatus]:
    """The contract's ``event`` object as ``(event, side, status)``. A fill event must carry its ``fill``; the
    :class:`~mmframe.Fill` gets the order's side and the event's timestamp (fee 0). An ``amended`` event must carry
    the order's new ``price`` and ``quantity`` (positive decimal strings); another kind's are ignored."""
    field = "event"
    obj = _object(data, field)
    kind = _required(obj, "kind", field)
    event_kind = _KINDS.get(kind) if isinstance(kind, str) else None
    if event_kind is None:
        allowed = ", ".join(sorted(EVENT_KINDS))
        raise WireError(f"{field}.kind: must be one of {allowed}, got {_show(kind)}")
    client_order_id = _identifier(obj, "client_order_id", field)
    order_id = obj.get("order_id")
    if order_id is not None and not isinstance(order_id, str):
        raise WireError(f"{field}.order_id: must be a string, got {_show(order_id)}")
    symbol = _symbol(obj, field)
    side = _side(obj, field)
    status = _status(obj, field)
    filled = _non_negative(_required(obj, "filled_quantity", field), f"{field}.filled_quantity")
    timestamp = _required(obj, "timestamp", field)
    if isinstance(timestamp, bool) or not isinstance(timestamp, int | float | Decimal):
        raise WireError(f"{field}.timestamp: must be a number, got {_show(timestamp)}")
    ts = float(timestamp)
    fill: Fill | None = None
    raw_fill = obj.get("fill")
    if raw_fill is not None:
        fill_obj = _object(raw_fill, f"{field}.fill")
        trade_id = _required(fill_obj, "trade_id", f"{field}.fill")
        if not isinstance(trade_id, str) or not trade_id:
            raise WireError(f"{field}.fill.trade_id: must be a non-empty string, got {_show(trade_id)}")
        liquidity = _required(fill_obj, "liquidity", f"{field}.fill")
        if liquidity not in ("maker", "taker"):
            raise WireError(f'{field}.fill.liquidity: must be "maker" or "taker", got {_show(liquidity)}')
        fill = Fill(
            trade_id=trade_id,
            client_order_id=client_order_id,
            symbol=symbol,
            side=side,
            price=_positive(_required(fill_obj, "price", f"{field}.fill"), f"{field}.fill.price"),
            quantity=_positive(_required(fill_obj, "quantity", f"{field}.fill"), f"{field}.fill.quantity"),
            liquidity=Liquidity(liquidity),
            timestamp=ts,
        )
    if event_kind in _FILL_KINDS and fill is None:
        raise WireError(f"{field}.fill: required on a {kind} event")
    price: Decimal | None = None
    quantity: Decimal | None = None
    if event_kind is OrderEventKind.AMENDED:
        price = _positive(_required(obj, "price", field), f"{field}.price")
        quantity = _positive(_required(obj, "quantity", field), f"{field}.quantity")
    event = OrderEvent(
        kind=event_kind,
        client_order_id=client_order_id,
        symbol=symbol,
        filled_quantity=filled,
        order_id=order_id,
        fill=fill,
        reason=_reason(obj, field),
        timestamp=ts,
        price=price,
        quantity=quantity,
    )
    return event, side, status


# ---------------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------------


def error_body(code: str, message: str) -> dict[str, Any]:
    """The contract's error body: ``{"error": {"code": ..., "message": ...}}``."""
    return {"error": {"code": code, "message": message}}
