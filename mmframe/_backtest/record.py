"""The record format ("mmframe record", version 1): market data as a feed delivered it, for replay.

A record is a gzip file (usually named ``*.jsonl.gz``) of UTF-8 JSON lines. It may hold several gzip members one
after another: every :meth:`RecordWriter.flush` ends one, so the file is a valid gzip file after each flush, and
appending a recording to a file adds members to it. Line 1 is the header::

    {"format": "mmframe-record", "version": 1, "source": "feed:binance", "created": "2024-01-01T00:00:00Z"}

(``source`` and ``created`` are optional). Every other line is one event::

    {"t": 1704067200.125, "kind": "tick", "exchange": "binance", "symbol": "BTCUSDT", "price": "42000.10",
     "bid": "42000.00", "ask": "42000.20", "ts": 1704067200.1}
    {"t": 1704067200.2, "kind": "depth", "exchange": "binance", "symbol": "BTCUSDT",
     "bids": [["42000.00", "1.5"], ...], "asks": [["42000.20", "0.7"], ...], "sequence": 17}
    {"t": 1704067200.3, "kind": "trade", "exchange": "binance", "symbol": "BTCUSDT", "price": "42000.20",
     "qty": "0.01", "side": "buy", "id": "3301"}

``t`` (epoch seconds) is when the event was recorded, the receive time; it never decreases through the file and is
the replay's clock. ``ts`` is the item's own timestamp when it differs from ``t``. Prices and quantities are decimal
strings, read back exactly; a trade's ``side`` is the aggressor's. ``bid``/``ask``, ``sequence``, ``id`` and ``ts``
are optional; blank lines are ignored, and so are fields this version does not know.

:class:`RecordWriter` writes one; :func:`read_record` replays one as :class:`RecordedEvent` items (the public models
:class:`~mmframe.PriceTick`, :class:`~mmframe.DepthSnapshot`, :class:`~mmframe.Trade`); :func:`scan_record`
summarises one. Anything wrong with a file — a corrupt line, a missing field, a bad value, an unknown kind, time
going backwards, a missing header, a file cut off in the middle of a compressed member — raises
:class:`RecordError` with a message ``"{path}, line {n}: what is wrong"``.
"""

from __future__ import annotations

import fcntl
import gzip
import json
import json.scanner
import math
import os
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any, NoReturn

import attrs

from .._errors import MMFrameError
from .._models import DepthSnapshot, MarketData, PriceTick, Side, Trade

__all__ = [
    "FORMAT",
    "KINDS",
    "VERSION",
    "RecordError",
    "RecordInfo",
    "RecordWriter",
    "RecordedEvent",
    "kind_of",
    "read_record",
    "scan_record",
]

FORMAT = "mmframe-record"
VERSION = 1
#: The event kinds of version 1, in the order :class:`RecordInfo` reports them.
KINDS = ("tick", "depth", "trade")

#: A writer ends a gzip member on its own once this many bytes of lines wait (a long import stays in bounded
#: memory); a recorder flushes far more often anyway.
MAX_BUFFER = 4 * 1024 * 1024
COMPRESS_LEVEL = 6

StrPath = str | os.PathLike[str]


class RecordError(MMFrameError):
    """A record file (or a file being imported into one) cannot be used. The message names the file and the
    line: ``"data.jsonl.gz, line 9: t 1700000001.5 is earlier than line 8's 1700000002.0"``."""


@attrs.frozen
class RecordedEvent:
    """One event of a record: its line number, its receive time ``t`` (the replay clock) and the item."""

    line: int
    t: float
    item: MarketData


@attrs.frozen
class RecordInfo:
    """What :func:`scan_record` found in a record (having read and checked every line of it).

    :param header: the header line's fields (``format``, ``version``, and ``source``/``created`` when given).
    :param first_t, last_t: the first and last event's receive time; ``None`` when the file holds no event.
    :param kinds: events per kind, every kind of :data:`KINDS` present (zero when none).
    :param symbols: the distinct ``(exchange, symbol)`` pairs, sorted.
    """

    path: str
    header: Mapping[str, Any]
    first_t: float | None
    last_t: float | None
    kinds: Mapping[str, int]
    symbols: tuple[tuple[str, str], ...]

    @property
    def events(self) -> int:
        return sum(self.kinds.values())

    @property
    def duration(self) -> float:
        """Seconds from the first event to the last (0 with fewer than two)."""
        return 0.0 if self.first_t is None or self.last_t is None else self.last_t - self.first_t


def kind_of(item: MarketData) -> str:
    """The record's ``kind`` of *item*: ``tick``, ``depth`` or ``trade``."""
    if isinstance(item, PriceTick):
        return "tick"
    if isinstance(item, DepthSnapshot):
        return "depth"
    if isinstance(item, Trade):
        return "trade"
    _refuse(item)


def _refuse(item: object) -> NoReturn:
    raise TypeError(f"a record holds PriceTick, DepthSnapshot and Trade items, not {type(item).__name__}")


# ---------------------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------------------


class RecordWriter:
    """Writes market data to a record file, appending to it if it exists.

    A new (or empty) file gets the header at once. An existing one is read through first: its header must be a
    record's, its compressed data whole (a file cut off mid-member cannot be appended to), and its last event's
    ``t`` is read so that appended events continue in order (the lines between are not checked here).

    :meth:`write` keeps lines in memory; :meth:`flush` compresses them into one gzip member at the end of the
    file, which is then a valid record again. :meth:`close` (or leaving the ``with`` block, also on an error)
    flushes and closes.

    ``t`` never goes backwards: an event written with a ``t`` below the last one gets the last one (receive times
    from the wall clock are monotone in intent; a clock step back must not make an unreadable file).

    :param path: the file to write, created if missing.
    :param source: where the data comes from, for the header of a new file (``"feed:binance"``).
    :param max_buffer: bytes of lines after which :meth:`write` flushes on its own.
    """

    def __init__(self, path: StrPath, *, source: str = "", max_buffer: int = MAX_BUFFER) -> None:
        self.path = Path(path)
        self.max_buffer = max_buffer
        #: Events written by this writer (not counting those of the file it appends to), in all and per kind.
        self.written = 0
        self.counts = dict.fromkeys(KINDS, 0)
        self._buffer: list[str] = []
        self._buffered = 0
        self._last_t = -math.inf
        self._dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
        try:
            self._file: IO[bytes] | None = open(self.path, "ab")  # noqa: SIM115 - closed by close()
        except OSError as exc:
            raise RecordError(f"{self.path}: cannot open: {exc.strerror or exc}") from None
        try:
            # One writer at a time: two appending at once would interleave their members and their times.
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._file.close()
            self._file = None
            raise RecordError(f"{self.path}: another recorder is writing to it") from None
        try:
            existing = os.fstat(self._file.fileno()).st_size > 0
            if existing:
                self._last_t, complete = _tail(self.path)
                if not complete:
                    self._buffer.append("\n")  # a hand-made file's last line lacks its newline: end it first
                    self._buffered += 1
        except BaseException:
            self._file.close()
            self._file = None
            raise
        if not existing:
            header: dict[str, Any] = {"format": FORMAT, "version": VERSION}
            if source:
                header["source"] = source
            header["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            self._buffer.append(self._dumps(header) + "\n")
            self.flush()  # a new file is a valid (empty) record from the first moment

    @property
    def last_t(self) -> float | None:
        """The ``t`` of the last event written (or found in the file appended to); ``None`` before any."""
        return None if self._last_t == -math.inf else self._last_t

    @property
    def closed(self) -> bool:
        return self._file is None

    def write(self, item: MarketData, t: float) -> None:
        """Add *item*, received at *t* (epoch seconds), to the record (held in memory until the next flush).

        Raises :class:`ValueError` for a non-finite *t* or item timestamp, :class:`TypeError` for an item that
        is not market data.
        """
        if self._file is None:
            raise ValueError(f"{self.path}: the record writer is closed")
        t = float(t)
        if not math.isfinite(t):
            raise ValueError(f"t must be a finite number of seconds, got {t!r}")
        if t < self._last_t:
            t = self._last_t
        event = _event(item, t)
        line = self._dumps(event)  # raises before anything changes: a refused item leaves no trace
        self._last_t = t
        self.counts[event["kind"]] += 1
        self._buffer.append(line + "\n")
        self._buffered += len(line) + 1
        self.written += 1
        if self._buffered >= self.max_buffer:
            self.flush()

    def flush(self) -> None:
        """Write what waits as one gzip member: the file is a complete, valid record afterwards."""
        if self._file is None or not self._buffer:
            return
        data = "".join(self._buffer).encode("utf-8")
        self._buffer.clear()
        self._buffered = 0
        self._file.write(gzip.compress(data, compresslevel=COMPRESS_LEVEL, mtime=0))
        self._file.flush()

    def close(self) -> None:
        """Flush and close the file (again: nothing)."""
        if self._file is None:
            return
        try:
            self.flush()
        finally:
            self._file.close()
            self._file = None

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<RecordWriter {self.path} written={self.written}>"


def _ts(item_timestamp: float, t: float, out: dict[str, Any]) -> dict[str, Any]:
    if item_timestamp != t:
        if not math.isfinite(item_timestamp):
            raise ValueError(f"the item's timestamp must be finite, got {item_timestamp!r}")
        out["ts"] = float(item_timestamp)
    return out


def _event(item: MarketData, t: float) -> dict[str, Any]:
    """The JSON object of one event line."""
    if isinstance(item, Trade):
        out: dict[str, Any] = {"t": t, "kind": "trade", "exchange": item.exchange, "symbol": item.symbol,
                               "price": str(item.price), "qty": str(item.quantity), "side": item.side.value}
        if item.trade_id:
            out["id"] = item.trade_id
        return _ts(item.timestamp, t, out)
    if isinstance(item, PriceTick):
        out = {"t": t, "kind": "tick", "exchange": item.exchange, "symbol": item.symbol, "price": str(item.price)}
        if item.bid is not None:
            out["bid"] = str(item.bid)
        if item.ask is not None:
            out["ask"] = str(item.ask)
        return _ts(item.timestamp, t, out)
    if isinstance(item, DepthSnapshot):
        out = {"t": t, "kind": "depth", "exchange": item.exchange, "symbol": item.symbol,
               "bids": [[str(p), str(q)] for p, q in item.bids], "asks": [[str(p), str(q)] for p, q in item.asks]}
        if item.sequence:
            out["sequence"] = item.sequence
        return _ts(item.timestamp, t, out)
    _refuse(item)


def _tail(path: Path) -> tuple[float, bool]:
    """The last event's ``t`` of the existing record at *path* (``-inf`` when it has none), and whether its last
    line ends with a newline; checks its header and that it is complete, raising :class:`RecordError` otherwise.
    Only the header and the last line are parsed."""
    number = last_number = 0
    last = b""
    complete = True
    for number, raw in _lines(path):
        complete = raw.endswith(b"\n")
        if number == 1:
            _header(raw, path)
        elif raw.strip():
            last, last_number = raw, number
    if number == 0:
        raise RecordError(f"{path}, line 1: missing header: the file holds no line")
    if not last:
        return -math.inf, complete
    try:
        data = json.loads(last)
        t = data["t"]
    except (ValueError, KeyError, TypeError):
        raise RecordError(f"{path}, line {last_number}: the last line is not an event with a time 't': "
                          f"{_excerpt(last)}") from None
    if type(t) not in (float, int) or not math.isfinite(t):
        raise RecordError(f"{path}, line {last_number}: t must be a finite number of seconds, got {t!r}")
    return float(t), complete


# ---------------------------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------------------------


class _Bad(Exception):
    """A bad value in one line; :func:`read_record` adds the path and the line number."""


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """The raw lines of the gzip file at *path*, numbered from 1, turning the file's own failures (cannot open,
    not gzip, corrupt or cut-off compressed data) into :class:`RecordError`."""
    number = 0
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed by the with block below
    except OSError as exc:
        raise RecordError(f"{path}: cannot open: {exc.strerror or exc}") from None
    with handle, gzip.GzipFile(fileobj=handle, mode="rb") as stream:
        try:
            for number, raw in enumerate(stream, 1):
                yield number, raw
        except EOFError:
            if number == 0:
                raise RecordError(f"{path}, line 1: the file is cut off inside its first compressed member "
                                  "(it was copied or killed while being written): no complete line") from None
            raise RecordError(f"{path}, line {number + 1}: the file is cut off in the middle of a compressed member "
                              f"after line {number} (it was copied or killed while being written; the lines up to "
                              f"{number} are good)") from None
        except (gzip.BadGzipFile, zlib.error) as exc:
            if number == 0:
                raise RecordError(f"{path}, line 1: not a gzip file (a record is gzip-compressed JSON lines): "
                                  f"{exc}") from None
            raise RecordError(f"{path}, line {number + 1}: corrupt compressed data after line {number}: "
                              f"{exc}") from None
        except OSError as exc:
            raise RecordError(f"{path}, line {number + 1}: cannot read: {exc.strerror or exc}") from None


def _excerpt(raw: bytes, limit: int = 80) -> str:
    text = raw.decode("utf-8", errors="replace").strip()
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _header(raw: bytes, path: Path) -> dict[str, Any]:
    try:
        header = json.loads(raw)
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise RecordError(f'{path}, line 1: not an mmframe record: the first line must be the header '
                          f'{{"format": "{FORMAT}", "version": {VERSION}}}, got {_excerpt(raw)}')
    version = header.get("version")
    if version != VERSION or type(version) is not int:
        raise RecordError(f"{path}, line 1: unsupported record version {version!r} (this mmframe reads version "
                          f"{VERSION})")
    return header


_scan_once = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[no-untyped-call]


def _parse_json(raw: bytes) -> Any:
    """One line's JSON value, as :func:`json.loads` reads it (raising :class:`ValueError` for anything else),
    but faster: ``json.loads`` of bytes first guesses their encoding, and its decoder matches whitespace with a
    regular expression, together more than half of the cost of a short line. The scanner reads from the first
    character; only a line that does not start with a value (blank, indented) or has something after it takes
    the slow path, which decides."""
    text = raw.decode("utf-8")  # UnicodeDecodeError is a ValueError
    try:
        data, end = _scan_once(text, 0)
    except StopIteration:
        return json.loads(text)
    if end != len(text) and text[end:].strip():
        return json.loads(text)  # raises: "Extra data"
    return data


_D = Decimal
_SIDES = {"buy": Side.BUY, "sell": Side.SELL}


def _positive(data: dict[str, Any], key: str) -> Decimal:
    """``data[key]``, a decimal string, as a positive finite Decimal (a KeyError when missing)."""
    text = data[key]
    if type(text) is str:
        try:
            value = _D(text)
        except InvalidOperation:
            pass
        else:
            if value.is_finite() and value > 0:
                return value
            raise _Bad(f"{key} must be positive and finite, got {text!r}")
    raise _Bad(f"{key} must be a positive decimal string, got {_what(text)}")


def _optional_positive(data: dict[str, Any], key: str) -> Decimal | None:
    return None if data.get(key) is None else _positive(data, key)


def _what(value: object) -> str:
    return f"{type(value).__name__} {value!r}" if not isinstance(value, str) else repr(value)


def _text(data: dict[str, Any], key: str) -> str:
    value = data[key]
    if type(value) is not str or not value:
        raise _Bad(f"{key} must be a non-empty string, got {_what(value)}")
    return value


def _seconds(data: dict[str, Any], key: str) -> float:
    value = data[key]
    if (type(value) is float or type(value) is int) and math.isfinite(value):
        return float(value)
    raise _Bad(f"{key} must be a finite number of seconds, got {_what(value)}")


def _levels(data: dict[str, Any], key: str) -> tuple[tuple[Decimal, Decimal], ...]:
    """``bids`` (best, the highest, first) or ``asks`` (the lowest first): pairs of a positive price and a quantity
    of at least 0, each price strictly beyond the one before."""
    levels = data[key]
    descending = key == "bids"
    if type(levels) is not list:
        raise _Bad(f"{key} must be a list of [price, quantity] pairs, got {_what(levels)}")
    out = []
    for i, level in enumerate(levels):
        if type(level) is not list or len(level) != 2 or type(level[0]) is not str or type(level[1]) is not str:
            raise _Bad(f"{key}[{i}] must be a [price, quantity] pair of decimal strings, got {level!r}")
        try:
            price, quantity = _D(level[0]), _D(level[1])
        except InvalidOperation:
            raise _Bad(f"{key}[{i}] is not a pair of decimals: {level!r}") from None
        if not (price.is_finite() and quantity.is_finite() and price > 0 and quantity >= 0):
            raise _Bad(f"{key}[{i}] needs a positive price and a quantity of at least 0, got {level!r}")
        if out and (price >= out[-1][0] if descending else price <= out[-1][0]):
            raise _Bad(f"{key}[{i}] at {level[0]} is not beyond {out[-1][0]}: {key} go best first "
                       f"({'highest' if descending else 'lowest'} first), each price once")
        out.append((price, quantity))
    return tuple(out)


_new = object.__new__
_set = object.__setattr__


def _built(cls: type[Any], names: tuple[str, ...], values: tuple[Any, ...]) -> Any:
    """An instance of the frozen attrs model *cls* with its fields *names* set to *values* as they are: the reader
    has checked every value exactly as the model's converters and validators would (a positive finite Decimal, a
    Side, levels of Decimals), so building it through them again would only cost time (a third of a trade's)."""
    item = _new(cls)
    for name, value in zip(names, values, strict=True):
        _set(item, name, value)
    return item


_TRADE_FIELDS = ("exchange", "symbol", "price", "quantity", "side", "timestamp", "trade_id")
_DEPTH_FIELDS = ("exchange", "symbol", "bids", "asks", "sequence", "timestamp")


def _tick(data: dict[str, Any], t: float) -> PriceTick:
    ts = _seconds(data, "ts") if "ts" in data else t
    return PriceTick(_text(data, "exchange"), _text(data, "symbol"), _positive(data, "price"), ts,
                     _optional_positive(data, "bid"), _optional_positive(data, "ask"))


def _trade(data: dict[str, Any], t: float) -> Trade:
    ts = _seconds(data, "ts") if "ts" in data else t
    exchange, symbol = _text(data, "exchange"), _text(data, "symbol")
    price, quantity = _positive(data, "price"), _positive(data, "qty")
    side = _SIDES.get(data["side"])  # type: ignore[call-overload]  # an unhashable value is caught below
    if side is None:
        raise _Bad(f"side must be 'buy' or 'sell', got {_what(data['side'])}")
    trade_id = data.get("id", "")
    if type(trade_id) is not str:
        raise _Bad(f"id must be a string, got {_what(trade_id)}")
    # _built(Trade, _TRADE_FIELDS, ...) written out: the most frequent line of a recording
    trade = _new(Trade)
    _set(trade, "exchange", exchange)
    _set(trade, "symbol", symbol)
    _set(trade, "price", price)
    _set(trade, "quantity", quantity)
    _set(trade, "side", side)
    _set(trade, "timestamp", ts)
    _set(trade, "trade_id", trade_id)
    return trade  # type: ignore[no-any-return]


def _depth(data: dict[str, Any], t: float) -> DepthSnapshot:
    ts = _seconds(data, "ts") if "ts" in data else t
    sequence = data.get("sequence", 0)
    if type(sequence) is not int:
        raise _Bad(f"sequence must be an integer, got {_what(sequence)}")
    return _built(DepthSnapshot, _DEPTH_FIELDS, (  # type: ignore[no-any-return]
        _text(data, "exchange"), _text(data, "symbol"), _levels(data, "bids"), _levels(data, "asks"), sequence, ts))


_PARSERS: dict[str, Callable[[dict[str, Any], float], MarketData]] = {
    "tick": _tick,
    "depth": _depth,
    "trade": _trade,
}


def read_record(path: StrPath) -> Iterator[RecordedEvent]:
    """The events of the record at *path*, in file order, each checked as it is read.

    A generator: a :class:`RecordError` (naming the file and the line) comes when the bad line is reached, after
    the good events before it. The file is closed when the generator is exhausted or closed.
    """
    path = Path(path)
    parse_line = _parse_json
    parsers = _PARSERS
    last_t = -math.inf
    last_line = 0
    number = 0
    for number, raw in _lines(path):
        if number == 1:
            _header(raw, path)
            continue
        try:
            data = parse_line(raw)
        except ValueError:
            if not raw.strip():
                continue
            raise RecordError(f"{path}, line {number}: not JSON (a corrupt line): {_excerpt(raw)}") from None
        if type(data) is not dict:
            raise RecordError(f"{path}, line {number}: an event must be a JSON object, got {_excerpt(raw)}")
        try:
            t = data["t"]
            if type(t) is not float:
                t = _seconds(data, "t")
            elif not -math.inf < t < math.inf:  # no NaN nor infinity (json.loads reads both)
                raise _Bad(f"t must be a finite number of seconds, got {t!r}")
            if t < last_t:
                raise _Bad(f"t {t!r} is earlier than line {last_line}'s {last_t!r}: times must not decrease")
            kind = data["kind"]
            parse = parsers.get(kind) if type(kind) is str else None
            if parse is None:
                raise _Bad(f"unknown kind {kind!r} (a version {VERSION} record holds {', '.join(KINDS)})")
            item = parse(data, t)
        except KeyError as exc:
            raise RecordError(f"{path}, line {number}: missing field {exc.args[0]!r}") from None
        except _Bad as exc:
            raise RecordError(f"{path}, line {number}: {exc}") from None
        except ValueError as exc:  # a model refused a value (its own validation)
            raise RecordError(f"{path}, line {number}: bad value: {exc}") from None
        last_t, last_line = t, number
        yield RecordedEvent(number, t, item)
    if number == 0:
        raise RecordError(f"{path}, line 1: missing header: the file holds no line")


def scan_record(path: StrPath) -> RecordInfo:
    """Read and check the whole record at *path*; what it holds (raises :class:`RecordError` as
    :func:`read_record`)."""
    path = Path(path)
    header: dict[str, Any] = {}
    for _, raw in _lines(path):
        header = _header(raw, path)
        break
    kinds = dict.fromkeys(KINDS, 0)
    symbols: set[tuple[str, str]] = set()
    first_t: float | None = None
    last_t: float | None = None
    for event in read_record(path):
        item = event.item
        if first_t is None:
            first_t = event.t
        last_t = event.t
        kinds[kind_of(item)] += 1
        symbols.add((item.exchange, item.symbol))
    return RecordInfo(
        path=str(path),
        header=MappingProxyType(header),
        first_t=first_t,
        last_t=last_t,
        kinds=MappingProxyType(kinds),
        symbols=tuple(sorted(symbols)),
    )
