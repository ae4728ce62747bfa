"""The configuration and audit store: SQLite embedded, MySQL/MariaDB in production.

Synchronous by design: the service calls it through ``trio.to_thread.run_sync``. Every public method either does
what it says or raises :class:`StoreError`, whose message names the database (never its password) and the
driver's reason. Loading markets never fails because of one bad row: a row that cannot be used as is carries a
non-empty :attr:`MarketRow.error` that names the table, row and column.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any

import attrs
from sqlalchemy import URL, Engine, and_, create_engine, event, inspect, make_url
from sqlalchemy import insert as sa_insert
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlmodel import Session, col, select

from .._errors import MMFrameError
from .._models import (
    Fill,
    Liquidity,
    Market,
    MarketType,
    Order,
    OrderEvent,
    OrderEventKind,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    to_decimal,
)
from .tables import (
    SEED_DDL_MYSQL,
    ConfigOverrideTable,
    FillTable,
    MarketDescriptionTable,
    OrderEventTable,
    StrategyCurrencyTable,
    StrategyStrategyTable,
    all_tables,
)

__all__ = [
    "FILL_COLUMNS",
    "ORDER_EVENT_COLUMNS",
    "FillRecord",
    "MarketDescription",
    "MarketRow",
    "OrderEventRecord",
    "Store",
    "StoreError",
    "fill_row",
    "market_id",
    "order_event_row",
]

_MYSQL_DIALECTS = ("mysql", "mariadb")


class StoreError(MMFrameError):
    """The database cannot be reached or refused an operation. The message names the database by its display URL
    (no password) and gives the driver's reason."""


def market_id(currency_id: int, market_type: int) -> str:
    """The id mmframe knows a market by: ``f"{currency_id}_{market_type}"`` (the seed's ``879_1``)."""
    return f"{currency_id}_{market_type}"


def _decimal_text(value: object) -> str:
    """A decimal as the exact, exponent-free string the store writes (``Decimal("60000.10")`` → ``"60000.10"``)."""
    return format(to_decimal(value), "f")


def _text_or_decimal(value: object) -> str:
    # A description read back from the database keeps its text (validated by MarketDescription.market());
    # a Decimal, int or float handed in by code is written exactly.
    return value if isinstance(value, str) else _decimal_text(value)


def _json_default(value: object) -> Any:
    if isinstance(value, Decimal):
        return _decimal_text(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _dumps(data: Mapping[str, Any]) -> str:
    return json.dumps(dict(data), separators=(",", ":"), ensure_ascii=False, default=_json_default)


def _parse_object(text: str | bytes | None, where: str, *, null_ok: bool = False) -> tuple[dict[str, Any], str]:
    """Parse a JSON object column; ``({}, error)`` when it is not one."""
    if text is None:
        return {}, "" if null_ok else f"{where} is NULL"
    try:
        data = json.loads(text)
    except (ValueError, TypeError) as exc:
        return {}, f"{where} is not valid JSON: {exc}"
    if not isinstance(data, dict):
        return {}, f"{where} must be a JSON object, got {type(data).__name__}"
    return data, ""


# ----------------------------------------------------------------------------------------------------------------
# What the store hands out
# ----------------------------------------------------------------------------------------------------------------


@attrs.frozen
class MarketDescription:
    """A market's local description (``mmframe_market``).

    :param symbol: the local symbol on our match engine, e.g. ``"BTC/USDT"``.
    :param tick_size: the price grid step, as an exact decimal string.
    :param min_quantity: the smallest order quantity, as an exact decimal string.
    :param options: engine options (feed, feed_config, risk, tolerance, ...): opaque to the store.
    """

    symbol: str
    tick_size: str = attrs.field(converter=_text_or_decimal)
    price_precision: int
    quantity_precision: int
    min_quantity: str = attrs.field(default="0", converter=_text_or_decimal)
    options: dict[str, Any] = attrs.field(factory=dict)

    def market(self, market_type: int = MarketType.SPOT) -> Market:
        """The :class:`mmframe.Market` this describes; :class:`ValueError` if it is not a valid one."""
        try:
            kind = MarketType(market_type)
        except ValueError:
            known = ", ".join(f"{t.value} ({t.name.lower()})" for t in MarketType)
            raise ValueError(f"market_type {market_type!r} is not one of {known}") from None
        return Market(
            self.symbol,
            tick_size=to_decimal(self.tick_size, name="tick_size"),
            price_precision=self.price_precision,
            quantity_precision=self.quantity_precision,
            min_quantity=to_decimal(self.min_quantity, name="min_quantity"),
            market_type=kind,
        )


@attrs.frozen
class MarketRow:
    """One ``strategy_currency`` row with its strategy, its description and its config override.

    :param id: ``f"{currency_id}_{market_type}"``, the seed's market id (``879_1``).
    :param strategy_id: the row's ``default_strategy``; ``strategy_name`` is None when no such strategy exists.
    :param strategy_config: the strategy's ``config`` JSON object (``{}`` when it is broken).
    :param overrides: this market's ``mmframe_config_override`` (``{}`` when there is none).
    :param description: this market's ``mmframe_market`` row, if any.
    :param error: non-empty when the row cannot be used as is; says which table, row and column is wrong.
    :param row_id: ``strategy_currency.id``.
    """

    id: str
    currency_id: int
    market_type: int
    index_symbol: str
    index_source: int
    market_status: int
    strategy_id: int
    strategy_name: str | None
    strategy_config: dict[str, Any]
    overrides: dict[str, Any]
    description: MarketDescription | None
    error: str = ""
    row_id: int = 0

    @property
    def effective_config(self) -> dict[str, Any]:
        """The strategy's config updated with this market's overrides (shallow)."""
        return {**self.strategy_config, **self.overrides}

    @property
    def enabled(self) -> bool:
        """``market_status == 1``: the market starts automatically."""
        return self.market_status == 1


@attrs.frozen
class OrderEventRecord:
    """One row of the order-event audit (``mmframe_order_event``)."""

    market_id: str
    symbol: str
    market_type: int
    client_order_id: str
    kind: OrderEventKind = attrs.field(converter=OrderEventKind)
    status: OrderStatus = attrs.field(converter=OrderStatus)
    side: Side = attrs.field(converter=Side)
    order_type: OrderType = attrs.field(converter=OrderType)
    quantity: Decimal = attrs.field(converter=to_decimal)
    filled_quantity: Decimal = attrs.field(default=Decimal(0), converter=to_decimal)
    price: Decimal | None = attrs.field(default=None, converter=attrs.converters.optional(to_decimal))
    order_id: str | None = None
    reason: str = ""
    timestamp: float = attrs.field(factory=time.time)

    @classmethod
    def from_event(cls, event: OrderEvent, order: Order, *, market_id: str, market_type: int) -> OrderEventRecord:
        """The audit row of *event*; *order* is the order as the tracker knows it after the event."""
        return cls(
            market_id=market_id,
            symbol=event.symbol,
            market_type=int(market_type),
            client_order_id=event.client_order_id,
            kind=event.kind,
            status=order.status,
            side=order.side,
            order_type=order.request.type,
            quantity=order.quantity,
            filled_quantity=event.filled_quantity,
            price=order.price,
            order_id=event.order_id or order.order_id,
            reason=event.reason,
            timestamp=event.timestamp,
        )


@attrs.frozen
class FillRecord:
    """One row of the fill audit (``mmframe_fill``)."""

    market_id: str
    symbol: str
    market_type: int
    trade_id: str
    client_order_id: str
    side: Side = attrs.field(converter=Side)
    price: Decimal = attrs.field(converter=to_decimal)
    quantity: Decimal = attrs.field(converter=to_decimal)
    liquidity: Liquidity = attrs.field(default=Liquidity.MAKER, converter=Liquidity)
    fee: Decimal = attrs.field(default=Decimal(0), converter=to_decimal)
    timestamp: float = attrs.field(factory=time.time)

    def fill(self) -> Fill:
        """The :class:`mmframe.Fill` this row records."""
        return Fill(
            trade_id=self.trade_id, client_order_id=self.client_order_id, symbol=self.symbol, side=self.side,
            price=self.price, quantity=self.quantity, liquidity=self.liquidity, fee=self.fee, timestamp=self.timestamp,
        )

    @classmethod
    def from_fill(cls, fill: Fill, *, market_id: str, market_type: int) -> FillRecord:
        return cls(
            market_id=market_id,
            symbol=fill.symbol,
            market_type=int(market_type),
            trade_id=fill.trade_id,
            client_order_id=fill.client_order_id,
            side=fill.side,
            price=fill.price,
            quantity=fill.quantity,
            liquidity=fill.liquidity,
            fee=fill.fee,
            timestamp=fill.timestamp,
        )


# ----------------------------------------------------------------------------------------------------------------
# The store
# ----------------------------------------------------------------------------------------------------------------


def _write_ahead_log(connection: Any, _record: Any) -> None:
    """SQLite in write-ahead-log mode: readers in other processes do not block the writer, nor it them."""
    cursor = connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
    finally:
        cursor.close()


class Store:
    """mmframe's database: the seed's configuration tables plus mmframe's own.

    :param url: a SQLAlchemy URL: ``sqlite:///path/to/mmframe.db`` or
        ``mysql+pymysql://user:pass@host:3306/db?charset=utf8mb4`` (see :meth:`mysql` to build one safely).

    Creating a store does not connect; the first operation does, and raises :class:`StoreError` if it cannot.
    """

    def __init__(self, url: str | URL) -> None:
        try:
            parsed = make_url(url)
        except ArgumentError:
            # The text may hold a password: do not repeat it.
            raise StoreError("not a database URL (expected e.g. sqlite:///mmframe.db or mysql+pymysql://...)") from None
        self._password = parsed.password
        connect_args: dict[str, Any] = {}
        if parsed.get_backend_name() in _MYSQL_DIALECTS and "connect_timeout" not in parsed.query:
            connect_args["connect_timeout"] = 5
        shared_file = parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:")
        if shared_file:
            # Several processes may share the file (``mmframe serve --workers``): a writer waits for another's
            # transaction instead of failing at once.
            connect_args["timeout"] = 30
        try:
            self._engine: Engine = create_engine(parsed, pool_pre_ping=True, connect_args=connect_args)
        except (ArgumentError, ImportError) as exc:
            raise StoreError(self._message("open the database", exc, parsed)) from None
        if shared_file:
            event.listen(self._engine, "connect", _write_ahead_log)

    @classmethod
    def sqlite(cls, path: str | os.PathLike[str]) -> Store:
        """An embedded SQLite store in the file *path* (created on first use)."""
        return cls(URL.create("sqlite", database=str(path)))

    @classmethod
    def mysql(
        cls, *, host: str, port: int = 3306, database: str, username: str = "root", password: str | None = None
    ) -> Store:
        """A MySQL/MariaDB store (pymysql, utf8mb4) from the seed's ``DB_*`` settings; special characters in the
        password need no escaping."""
        url = URL.create(
            "mysql+pymysql",
            username=username,
            password=password or None,
            host=host,
            port=port,
            database=database,
            query={"charset": "utf8mb4"},
        )
        return cls(url)

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def url_for_display(self) -> str:
        """The database URL with its password hidden: safe for logs and messages."""
        return self._engine.url.render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        """``"sqlite"``, ``"mysql"``, ``"mariadb"``, ..."""
        return self._engine.dialect.name

    def close(self) -> None:
        """Close every pooled connection."""
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.url_for_display!r})"

    # -- errors -----------------------------------------------------------------------------------------------

    def _message(self, action: str, exc: BaseException, url: URL | None = None) -> str:
        url = url if url is not None else self._engine.url
        reason = _reason(exc)
        message = f"database {url.render_as_string(hide_password=True)}: cannot {action}: {reason}"
        if self._password:
            message = message.replace(self._password, "***")
        return message

    @contextlib.contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        try:
            yield
        except SQLAlchemyError as exc:
            raise StoreError(self._message(action, exc)) from exc

    def ping(self) -> None:
        """Connect and run ``SELECT 1``; :class:`StoreError` if the database cannot be reached."""
        with self._guard("connect"), self._engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")

    # -- schema -----------------------------------------------------------------------------------------------

    def init(self) -> list[str]:
        """Create every missing table and return the names created (seed tables first).

        Existing tables are never altered or dropped: an operator's seed tables and their rows stay as they are.
        On MySQL/MariaDB the seed's tables are created from the seed's own DDL text.
        """
        created: list[str] = []
        with self._guard("create the tables"), self._engine.begin() as conn:
            existing = set(inspect(conn).get_table_names())
            for table in all_tables():
                if table.name in existing:
                    continue
                if table.name in SEED_DDL_MYSQL and conn.dialect.name in _MYSQL_DIALECTS:
                    conn.exec_driver_sql(SEED_DDL_MYSQL[table.name])
                else:
                    table.create(conn, checkfirst=True)
                created.append(table.name)
        return created

    # -- markets ----------------------------------------------------------------------------------------------

    def load_markets(self) -> list[MarketRow]:
        """Every ``strategy_currency`` row with its strategy, description and override, by ``strategy_currency.id``.

        A row whose strategy is missing or whose JSON is broken is returned with :attr:`MarketRow.error` set; a
        second row for a ``(currency_id, market_type)`` that an earlier row already has is flagged the same way.
        """
        rows = self._load()
        seen: dict[str, int] = {}
        out = []
        for row in rows:
            first = seen.setdefault(row.id, row.row_id)
            if first != row.row_id:
                duplicate = (
                    f"strategy_currency id={row.row_id}: market {row.id} is already defined by "
                    f"strategy_currency id={first}"
                )
                row = attrs.evolve(row, error="; ".join(e for e in (row.error, duplicate) if e))
            out.append(row)
        return out

    def load_market(self, currency_id: int, market_type: int) -> MarketRow | None:
        """The market ``(currency_id, market_type)`` (its first ``strategy_currency`` row), or None."""
        rows = self._load(currency_id, market_type)
        return rows[0] if rows else None

    def _load(self, currency_id: int | None = None, market_type: int | None = None) -> list[MarketRow]:
        sc, ss, mk, ov = StrategyCurrencyTable, StrategyStrategyTable, MarketDescriptionTable, ConfigOverrideTable
        stmt = (
            select(sc, ss, mk, ov)
            .outerjoin(ss, col(ss.id) == col(sc.default_strategy))
            .outerjoin(mk, and_(col(mk.currency_id) == col(sc.currency_id), col(mk.market_type) == col(sc.market_type)))
            .outerjoin(ov, and_(col(ov.currency_id) == col(sc.currency_id), col(ov.market_type) == col(sc.market_type)))
            .order_by(col(sc.id))
        )
        if currency_id is not None and market_type is not None:
            stmt = stmt.where(col(sc.currency_id) == currency_id, col(sc.market_type) == market_type)
        with self._guard("load the markets"), Session(self._engine) as session:
            return [_market_row(*result) for result in session.exec(stmt).all()]

    def save_override(
        self, currency_id: int, market_type: int, config: Mapping[str, Any], *, replace: bool = True
    ) -> bool:
        """Insert or replace the config override of market ``(currency_id, market_type)``; with ``replace=False``,
        only insert it when the market has none. Returns whether it was written."""
        if not isinstance(config, Mapping):
            raise TypeError(f"an override must be a mapping of config keys, not {type(config).__name__}")
        values = {"config": _dumps(config), "updated_at": time.time()}
        with self._guard("save the config override"), self._engine.begin() as conn:
            return self._write(conn, ConfigOverrideTable, currency_id, market_type, values, replace)

    def delete_override(self, currency_id: int, market_type: int) -> None:
        """Remove the config override of market ``(currency_id, market_type)`` (nothing if there is none)."""
        table = ConfigOverrideTable.__table__
        with self._guard("delete the config override"), self._engine.begin() as conn:
            conn.execute(table.delete().where(table.c.currency_id == currency_id, table.c.market_type == market_type))

    def save_market(
        self, currency_id: int, market_type: int, description: MarketDescription, *, replace: bool = True
    ) -> bool:
        """Insert or update the local description of market ``(currency_id, market_type)``; with ``replace=False``,
        only insert it when the market has none. Returns whether it was written."""
        values = {
            "symbol": description.symbol,
            "tick_size": description.tick_size,
            "price_precision": description.price_precision,
            "quantity_precision": description.quantity_precision,
            "min_quantity": description.min_quantity,
            "options": _dumps(description.options),
        }
        with self._guard("save the market description"), self._engine.begin() as conn:
            return self._write(conn, MarketDescriptionTable, currency_id, market_type, values, replace)

    def find_strategy(self, name: str) -> tuple[int, dict[str, Any]] | None:
        """The first ``strategy_strategy`` row named *name* (by id): its id and its config (``{}`` when that is not
        a JSON object), or None."""
        with self._guard("read the strategies"), Session(self._engine) as session:
            row = session.exec(
                select(StrategyStrategyTable)
                .where(col(StrategyStrategyTable.strategy_name) == name)
                .order_by(col(StrategyStrategyTable.id))
            ).first()
            if row is None or row.id is None:
                return None
            config, _ = _parse_object(row.config, "")
            return row.id, config

    def add_strategy(self, name: str, config: Mapping[str, Any], desc: str = "") -> int:
        """Insert a ``strategy_strategy`` row and return its id."""
        with self._guard("add a strategy"), Session(self._engine) as session:
            row = StrategyStrategyTable(strategy_name=name, config=_dumps(config), desc=desc)
            session.add(row)
            session.commit()
            session.refresh(row)
            assert row.id is not None
            return row.id

    def add_currency(
        self,
        currency_id: int,
        market_type: int,
        index_symbol: str,
        default_strategy: int,
        *,
        market_status: int = 0,
        index_source: int = 0,
    ) -> bool:
        """Insert a ``strategy_currency`` row for market ``(currency_id, market_type)`` unless one exists; returns
        whether it was written."""
        with self._guard("add a currency"), Session(self._engine) as session:
            if _exists(session, StrategyCurrencyTable, currency_id, market_type):
                return False
            session.add(
                StrategyCurrencyTable(
                    currency_id=currency_id,
                    index_symbol=index_symbol,
                    index_source=index_source,
                    market_status=market_status,
                    market_type=market_type,
                    default_strategy=default_strategy,
                )
            )
            session.commit()
            return True

    def _write(
        self, conn: Any, model: Any, currency_id: int, market_type: int, values: dict[str, Any], replace: bool
    ) -> bool:
        """Upsert the row of *model* keyed by ``(currency_id, market_type)``, or with ``replace=False`` insert it
        only when there is none; whether it was written."""
        if replace:
            self._upsert(conn, model, currency_id, market_type, values)
            return True
        table = model.__table__
        where = and_(table.c.currency_id == currency_id, table.c.market_type == market_type)
        if conn.execute(table.select().where(where)).first() is not None:
            return False
        conn.execute(sa_insert(table).values(currency_id=currency_id, market_type=market_type, **values))
        return True

    def _upsert(self, conn: Any, model: Any, currency_id: int, market_type: int, values: dict[str, Any]) -> None:
        """Insert or update the row of *model* keyed by the unique ``(currency_id, market_type)``."""
        table = model.__table__
        key = {"currency_id": currency_id, "market_type": market_type}
        name = conn.dialect.name
        if name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            conn.execute(
                sqlite_insert(table)
                .values(**key, **values)
                .on_conflict_do_update(index_elements=list(key), set_=values)
            )
        elif name in _MYSQL_DIALECTS:
            from sqlalchemy.dialects.mysql import insert as mysql_insert

            conn.execute(mysql_insert(table).values(**key, **values).on_duplicate_key_update(**values))
        else:
            where = and_(table.c.currency_id == currency_id, table.c.market_type == market_type)
            if conn.execute(table.update().where(where).values(**values)).rowcount == 0:
                conn.execute(sa_insert(table).values(**key, **values))

    # -- audit ------------------------------------------------------------------------------------------------

    def record(self, order_events: Sequence[OrderEventRecord] = (), fills: Sequence[FillRecord] = ()) -> None:
        """Append order events and fills to the audit, all in one transaction."""
        if not order_events and not fills:
            return
        event_rows = [_event_values(e) for e in order_events]
        fill_rows = [_fill_values(f) for f in fills]
        with self._guard("record the audit"), self._engine.begin() as conn:
            if event_rows:
                conn.execute(sa_insert(OrderEventTable.__table__), event_rows)
            if fill_rows:
                conn.execute(sa_insert(FillTable.__table__), fill_rows)

    def record_rows(
        self, order_events: Sequence[tuple[Any, ...]] = (), fills: Sequence[tuple[Any, ...]] = ()
    ) -> None:
        """Append audit rows made by :func:`order_event_row` and :func:`fill_row`, all in one transaction: what
        :meth:`record` writes for the same events and fills, without record objects or SQLAlchemy's per-row
        statement processing (the audit trail's writer). On SQLite, many rows per ``INSERT``: the driver gives up
        Python's interpreter lock once per statement, not once per row, so a writer thread beside a busy event loop
        is not made to wait for it row by row. On MySQL/MariaDB the driver's ``executemany`` does the same."""
        if not order_events and not fills:
            return
        with self._guard("record the audit"), self._engine.begin() as conn:
            for table, columns, rows in ((OrderEventTable.__table__, ORDER_EVENT_COLUMNS, order_events),
                                         (FillTable.__table__, FILL_COLUMNS, fills)):
                if not rows:
                    continue
                style = self._engine.dialect.paramstyle
                if style == "qmark":
                    per = max(1, _SQLITE_VARIABLES // len(columns))
                    for start in range(0, len(rows), per):
                        chunk = rows[start:start + per]
                        conn.exec_driver_sql(_insert_sql(table.name, columns, "?", len(chunk)),
                                             tuple(value for row in chunk for value in row))
                elif style in ("format", "pyformat"):
                    conn.exec_driver_sql(_insert_sql(table.name, columns, "%s", 1), list(rows))
                else:  # a driver whose placeholders are named: through SQLAlchemy's insert
                    conn.execute(sa_insert(table), [dict(zip(columns, row, strict=True)) for row in rows])

    def fills(
        self, symbol: str | None = None, market_type: int | None = None, *, client_prefix: str | None = None
    ) -> list[FillRecord]:
        """Recorded fills, oldest first, optionally of one symbol, market type and/or client-id prefix."""
        stmt = select(FillTable).order_by(col(FillTable.timestamp), col(FillTable.id))
        if client_prefix is not None:
            escaped = client_prefix.replace("/", "//").replace("%", "/%").replace("_", "/_")
            stmt = stmt.where(col(FillTable.client_order_id).like(f"{escaped}%", escape="/"))
        if symbol is not None:
            stmt = stmt.where(col(FillTable.symbol) == symbol)
        if market_type is not None:
            stmt = stmt.where(col(FillTable.market_type) == market_type)
        with self._guard("read the fills"), Session(self._engine) as session:
            rows = session.exec(stmt).all()
            return [_from_row(FillRecord, "mmframe_fill", row) for row in rows]

    def order_events(self, client_order_id: str | None = None) -> list[OrderEventRecord]:
        """Recorded order events, oldest first, optionally of one client order id."""
        stmt = select(OrderEventTable).order_by(col(OrderEventTable.timestamp), col(OrderEventTable.id))
        if client_order_id is not None:
            stmt = stmt.where(col(OrderEventTable.client_order_id) == client_order_id)
        with self._guard("read the order events"), Session(self._engine) as session:
            rows = session.exec(stmt).all()
            return [_from_row(OrderEventRecord, "mmframe_order_event", row) for row in rows]


# ----------------------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------------------


def _reason(exc: BaseException) -> str:
    """The driver's reason for *exc*, on one line."""
    orig = exc.orig if isinstance(exc, DBAPIError) else None
    if orig is not None:
        args = orig.args
        if len(args) == 2 and isinstance(args[0], int):  # pymysql: (code, message)
            return f"{args[1]} (error {args[0]})"
        text = str(orig) or type(orig).__name__
    else:
        text = str(exc) or type(exc).__name__
    return text.strip().splitlines()[0]


def _exists(session: Session, model: Any, currency_id: int, market_type: int) -> bool:
    stmt = select(model).where(col(model.currency_id) == currency_id, col(model.market_type) == market_type)
    return session.exec(stmt).first() is not None


def _market_row(
    sc: StrategyCurrencyTable,
    ss: StrategyStrategyTable | None,
    mk: MarketDescriptionTable | None,
    ov: ConfigOverrideTable | None,
) -> MarketRow:
    mid = market_id(sc.currency_id, sc.market_type)
    key = f"currency_id={sc.currency_id}, market_type={sc.market_type}"
    errors: list[str] = []
    strategy_config: dict[str, Any] = {}
    if ss is None:
        errors.append(
            f"strategy_currency id={sc.id} (market {mid}): default_strategy={sc.default_strategy} "
            "does not exist in strategy_strategy"
        )
    else:
        strategy_config, error = _parse_object(
            ss.config, f"strategy_strategy id={ss.id} ({ss.strategy_name!r}) column config"
        )
        errors.append(error)
    overrides: dict[str, Any] = {}
    if ov is not None:
        overrides, error = _parse_object(ov.config, f"mmframe_config_override ({key}) column config")
        errors.append(error)
    description = None
    if mk is not None:
        options, error = _parse_object(mk.options, f"mmframe_market ({key}) column options", null_ok=True)
        errors.append(error)
        description = MarketDescription(
            symbol=mk.symbol,
            tick_size=mk.tick_size,
            price_precision=mk.price_precision,
            quantity_precision=mk.quantity_precision,
            min_quantity=mk.min_quantity,
            options=options,
        )
        try:
            description.market(sc.market_type)
        except ValueError as exc:
            errors.append(f"mmframe_market ({key}): {exc}")
    return MarketRow(
        id=mid,
        currency_id=sc.currency_id,
        market_type=sc.market_type,
        index_symbol=sc.index_symbol,
        index_source=sc.index_source,
        market_status=sc.market_status,
        strategy_id=sc.default_strategy,
        strategy_name=ss.strategy_name if ss is not None else None,
        strategy_config=strategy_config,
        overrides=overrides,
        description=description,
        error="; ".join(e for e in errors if e),
        row_id=sc.id or 0,
    )


#: The columns of ``mmframe_order_event`` a row of :func:`order_event_row` holds, in order.
ORDER_EVENT_COLUMNS = (
    "market_id", "symbol", "market_type", "client_order_id", "order_id", "kind", "status", "side", "order_type",
    "price", "quantity", "filled_quantity", "reason", "timestamp",
)
#: The columns of ``mmframe_fill`` a row of :func:`fill_row` holds, in order.
FILL_COLUMNS = (
    "market_id", "symbol", "market_type", "trade_id", "client_order_id", "side", "price", "quantity", "liquidity",
    "fee", "timestamp",
)


#: Bound values per SQLite statement (its limit is 32,766 since 3.32, 999 before).
_SQLITE_VARIABLES = 7_000 if sqlite3.sqlite_version_info >= (3, 32) else 999


@functools.lru_cache(maxsize=64)
def _insert_sql(table: str, columns: tuple[str, ...], mark: str, rows: int) -> str:
    """``INSERT INTO table (columns) VALUES (?, ...), (?, ...)`` for *rows* rows in the driver's placeholders."""
    group = f"({', '.join([mark] * len(columns))})"
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([group] * rows)}"


def order_event_row(
    event: OrderEvent,
    request: OrderRequest,
    status: OrderStatus,
    order_id: str | None,
    market_id: str,
    market_type: int,
) -> tuple[Any, ...]:
    """The ``mmframe_order_event`` row (:data:`ORDER_EVENT_COLUMNS`) of *event*, given the order's request, and its
    status and engine id right after the event (an :class:`~mmframe.Order` is updated in place: the audit trail takes
    these two when the event is applied). The values :meth:`Store.record` writes for
    ``OrderEventRecord.from_event(event, order, ...)``, without the record: the audit trail's writer makes one per
    order event (the models' decimals are finite already)."""
    price = request.price
    return (
        market_id, event.symbol, market_type, event.client_order_id, event.order_id or order_id,
        event.kind.value, status.value, request.side.value, request.type.value,
        None if price is None else format(price, "f"), format(request.quantity, "f"),
        format(event.filled_quantity, "f"), event.reason, float(event.timestamp),
    )


def fill_row(fill: Fill, market_id: str, market_type: int) -> tuple[Any, ...]:
    """The ``mmframe_fill`` row (:data:`FILL_COLUMNS`) of *fill*: what :meth:`Store.record` writes for
    ``FillRecord.from_fill(fill, ...)``, without the record."""
    return (
        market_id, fill.symbol, market_type, fill.trade_id, fill.client_order_id, fill.side.value,
        format(fill.price, "f"), format(fill.quantity, "f"), fill.liquidity.value, format(fill.fee, "f"),
        float(fill.timestamp),
    )


def _event_values(event: OrderEventRecord) -> dict[str, Any]:
    return {
        "market_id": event.market_id,
        "symbol": event.symbol,
        "market_type": int(event.market_type),
        "client_order_id": event.client_order_id,
        "order_id": event.order_id,
        "kind": event.kind.value,
        "status": event.status.value,
        "side": event.side.value,
        "order_type": event.order_type.value,
        "price": None if event.price is None else _decimal_text(event.price),
        "quantity": _decimal_text(event.quantity),
        "filled_quantity": _decimal_text(event.filled_quantity),
        "reason": event.reason,
        "timestamp": float(event.timestamp),
    }


def _fill_values(fill: FillRecord) -> dict[str, Any]:
    return {
        "market_id": fill.market_id,
        "symbol": fill.symbol,
        "market_type": int(fill.market_type),
        "trade_id": fill.trade_id,
        "client_order_id": fill.client_order_id,
        "side": fill.side.value,
        "price": _decimal_text(fill.price),
        "quantity": _decimal_text(fill.quantity),
        "liquidity": fill.liquidity.value,
        "fee": _decimal_text(fill.fee),
        "timestamp": float(fill.timestamp),
    }


def _from_row(cls: Any, table: str, row: Any) -> Any:
    values = {a.name: getattr(row, a.name) for a in attrs.fields(cls)}
    try:
        return cls(**values)
    except ValueError as exc:
        raise StoreError(f"{table} id={row.id} is not a valid record: {exc}") from None
