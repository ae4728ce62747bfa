"""The market-data bus's wire format, the seed's: channel names and JSON payloads.

Channels::

    price:update:{exchange}:{symbol}    {"exchange": "binance", "symbol": "BTCUSDT", "price": "45000.50",
                                         "timestamp": 1699999999999}
    depth:update:{exchange}:{symbol}    {"exchange": "binance", "symbol": "BTCUSDT",
                                         "bids": [["45000.50", "1.2"], ...], "asks": [["45001.00", "1.1"], ...],
                                         "timestamp": 1699999999999}

mmframe writes prices and quantities as decimal strings (exact; a float would not be) and the timestamp in epoch
milliseconds, as the seed does; a price tick may also carry ``"bid"`` and ``"ask"``. Reading, it also accepts the
seed's JSON numbers (parsed straight into :class:`~decimal.Decimal`, never through a float) and a timestamp in
seconds. Anything else — not JSON, not an object, a missing or wrong-typed field, a symbol that is not the
channel's, a payload over the size limit — raises :class:`~mmframe.feedtools.BadMessage`.
"""

from __future__ import annotations

import json
from decimal import Decimal

from .._models import DepthSnapshot, MarketData, PriceTick
from ..feedtools import BadMessage, depth_snapshot, finite_timestamp, parse_levels, parse_price

__all__ = [
    "MAX_PAYLOAD",
    "decode_depth",
    "decode_price",
    "depth_channel",
    "encode",
    "price_channel",
]

MAX_PAYLOAD = 64 * 1024


def price_channel(exchange: str, symbol: str) -> str:
    return f"price:update:{exchange}:{symbol}"


def depth_channel(exchange: str, symbol: str) -> str:
    return f"depth:update:{exchange}:{symbol}"


def _ms(timestamp: float) -> int:
    return round(timestamp * 1000)


def encode(exchange: str, item: MarketData) -> tuple[str, str]:
    """The channel and payload that publish *item* (its symbol as it is) for *exchange*."""
    if isinstance(item, PriceTick):
        body: dict[str, object] = {
            "exchange": exchange,
            "symbol": item.symbol,
            "price": str(item.price),
            "timestamp": _ms(item.timestamp),
        }
        if item.bid is not None:
            body["bid"] = str(item.bid)
        if item.ask is not None:
            body["ask"] = str(item.ask)
        return price_channel(exchange, item.symbol), json.dumps(body, separators=(",", ":"))
    if not isinstance(item, DepthSnapshot):
        raise TypeError(f"the bus has no channel for {type(item).__name__}")
    body = {
        "exchange": exchange,
        "symbol": item.symbol,
        "bids": [[str(p), str(q)] for p, q in item.bids],
        "asks": [[str(p), str(q)] for p, q in item.asks],
        "timestamp": _ms(item.timestamp),
    }
    return depth_channel(exchange, item.symbol), json.dumps(body, separators=(",", ":"))


def _object(payload: bytes | str, symbol: str) -> dict[str, object]:
    if len(payload) > MAX_PAYLOAD:
        raise BadMessage(f"payload of {len(payload)} bytes is over the limit of {MAX_PAYLOAD}")
    try:
        text = payload.decode("utf-8") if isinstance(payload, bytes) else payload
        data = json.loads(text, parse_float=Decimal, parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        raise BadMessage("payload is not UTF-8") from None
    except ValueError as exc:
        raise BadMessage(f"payload is not JSON ({exc})") from None
    except RecursionError:  # "[[[[...": nested deeper than the parser goes; never a price
        raise BadMessage("payload is nested too deeply") from None
    if not isinstance(data, dict):
        raise BadMessage(f"payload must be a JSON object, got {type(data).__name__}")
    named = data.get("symbol")
    if named is not None and named != symbol:
        raise BadMessage(f"payload names symbol {named!r} on the channel of {symbol!r}")
    exchange = data.get("exchange")
    if exchange is not None and not isinstance(exchange, str):
        raise BadMessage(f"exchange must be a string, got {type(exchange).__name__}")
    return data


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not a number")


def decode_price(payload: bytes | str, exchange: str, symbol: str) -> PriceTick:
    """The tick in a ``price:update`` payload received on *symbol*'s channel."""
    data = _object(payload, symbol)
    price = parse_price(data.get("price"), "price")
    bid = None if data.get("bid") is None else parse_price(data["bid"], "bid")
    ask = None if data.get("ask") is None else parse_price(data["ask"], "ask")
    if bid is not None and ask is not None and bid >= ask:
        raise BadMessage(f"crossed bid {bid} and ask {ask}")
    return PriceTick(
        exchange=str(data.get("exchange") or exchange),
        symbol=symbol,
        price=price,
        timestamp=finite_timestamp(data.get("timestamp")),
        bid=bid,
        ask=ask,
    )


def decode_depth(payload: bytes | str, exchange: str, symbol: str) -> DepthSnapshot:
    """The snapshot in a ``depth:update`` payload received on *symbol*'s channel."""
    data = _object(payload, symbol)
    return depth_snapshot(
        str(data.get("exchange") or exchange),
        symbol,
        parse_levels(data.get("bids"), "bids"),
        parse_levels(data.get("asks"), "asks"),
        timestamp=finite_timestamp(data.get("timestamp")),
    )
