"""The store against both backends: SQLite (embedded) and MariaDB (production).

Every test runs twice through the ``store`` fixture. The MariaDB case gets a fresh database
``mmframe_test_<hex>`` that is dropped afterwards; without a server it is skipped, unless
``MMFRAME_REQUIRE_SERVICES=1`` (CI), where it fails.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import pymysql
import pytest
from sqlalchemy.exc import DBAPIError

from mmframe._demo import DEMO_MARKETS, demo_feed_config, demo_strategy_config, write_demo
from mmframe._errors import MMFrameError
from mmframe._models import (
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
from mmframe._store import FillRecord, MarketDescription, OrderEventRecord, Store, StoreError

from .seed_sql import SEED_CONFIG, SEED_SQL, run_sql

MARIADB = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}

ALL_TABLES = {
    "strategy_strategy",
    "strategy_currency",
    "mmframe_market",
    "mmframe_config_override",
    "mmframe_order_event",
    "mmframe_fill",
}
MMFRAME_TABLES = ALL_TABLES - {"strategy_strategy", "strategy_currency"}

def table_definitions(store: Store) -> dict[str, str]:
    """Each table's definition as the database reports it."""
    with store.engine.connect() as conn:
        if store.dialect == "sqlite":
            rows = conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'table'").all()
            return {name: sql for name, sql in rows if not name.startswith("sqlite_")}
        names = [row[0] for row in conn.exec_driver_sql("SHOW TABLES").all()]
        return {name: conn.exec_driver_sql(f"SHOW CREATE TABLE `{name}`").one()[1] for name in names}


def all_rows(store: Store, table: str) -> list[tuple[Any, ...]]:
    with store.engine.connect() as conn:
        return [tuple(row) for row in conn.exec_driver_sql(f"SELECT * FROM {table} ORDER BY id").all()]


# --------------------------------------------------------------------------------------------------------------
# The fixture: one store per backend
# --------------------------------------------------------------------------------------------------------------


def _mariadb_or_skip() -> pymysql.connections.Connection:
    try:
        return pymysql.connect(**MARIADB, connect_timeout=3)
    except pymysql.err.OperationalError as exc:
        message = f"MariaDB at {MARIADB['host']}:{MARIADB['port']} is unreachable: {exc}"
        if os.environ.get("MMFRAME_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(params=["sqlite", "mariadb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        s = Store.sqlite(tmp_path / "mmframe.db")
        yield s
        s.close()
        return
    admin = _mariadb_or_skip()
    name = f"mmframe_test_{secrets.token_hex(6)}"
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        s = Store(f"mysql+pymysql://{MARIADB['user']}@{MARIADB['host']}:{MARIADB['port']}/{name}?charset=utf8mb4")
        try:
            yield s
        finally:
            s.close()
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


# --------------------------------------------------------------------------------------------------------------
# The seed's tables
# --------------------------------------------------------------------------------------------------------------

SEED_DEPTH_LEVELS = SEED_CONFIG["depth_levels"]


def test_the_seed_sql_verbatim_loads_unchanged(store: Store) -> None:
    run_sql(store, SEED_SQL)
    assert set(store.init()) == MMFRAME_TABLES

    rows = store.load_markets()
    assert [(r.id, r.index_symbol) for r in rows] == [("879_1", "BTCUSDT"), ("880_1", "ETHUSDT")]
    for row in rows:
        assert row.error == ""
        assert (row.index_source, row.market_status, row.market_type, row.strategy_id) == (1, 1, 1, 1)
        assert row.enabled
        assert row.strategy_name == "external_index_follow"
        assert row.strategy_config == {
            "price_change_amount": 1.0,
            "tick_size": 0.1,
            "base_quantity": 10,
            "price_follow_percent": 100.0,
            "base_precision": 2,
            "quote_precision": 4,
            "max_active_orders": 100,
            "maintenance_interval": "1s",
            "depth_levels": SEED_DEPTH_LEVELS,
        }
        assert row.overrides == {}
        assert row.effective_config == row.strategy_config
        assert row.description is None
    assert len(rows[0].strategy_config["depth_levels"]) == 10
    btc = store.load_market(879, 1)
    assert btc == rows[0]
    assert store.load_market(879, 2) is None


def test_init_on_an_empty_database_creates_every_table_once(store: Store) -> None:
    assert set(store.init()) == ALL_TABLES
    assert set(table_definitions(store)) == ALL_TABLES
    assert store.init() == []
    assert store.load_markets() == []


def test_init_never_alters_an_existing_seed_table(store: Store) -> None:
    run_sql(store, SEED_SQL)
    before = table_definitions(store)
    assert set(before) == {"strategy_strategy", "strategy_currency"}
    rows_before = {t: all_rows(store, t) for t in before}

    assert set(store.init()) == MMFRAME_TABLES
    assert store.init() == []

    after = table_definitions(store)
    assert {t: after[t] for t in before} == before
    assert {t: all_rows(store, t) for t in before} == rows_before
    if store.dialect != "sqlite":
        # The seed's own definition: MariaDB keeps `json` as a checked LONGTEXT and the comments.
        assert "json_valid(`config`)" in after["strategy_strategy"]
        assert "COMMENT '市场类型:1现货 2杠杆'" in after["strategy_currency"]


def test_init_creates_the_seed_tables_as_the_seed_defines_them(store: Store, tmp_path: Path) -> None:
    seed_ddl, seed_inserts = SEED_SQL.split("INSERT", 1)
    seed_inserts = "INSERT" + seed_inserts
    store.init()
    if store.dialect == "sqlite":
        # SQLite keeps each statement's text: compare the columns with those of the seed's adapted DDL.
        reference = Store.sqlite(tmp_path / "reference.db")
        run_sql(reference, seed_ddl)
        for table in ("strategy_strategy", "strategy_currency"):
            assert _sqlite_columns(store, table) == _sqlite_columns(reference, table)
        reference.close()
    else:
        mine = table_definitions(store)
        with store.engine.begin() as conn:
            for table in ("strategy_strategy", "strategy_currency"):
                conn.exec_driver_sql(f"RENAME TABLE `{table}` TO `mine_{table}`")
        run_sql(store, seed_ddl)
        theirs = table_definitions(store)
        for table in ("strategy_strategy", "strategy_currency"):
            assert mine[table] == theirs[table]
    # The seed's rows go into the tables init() made.
    fresh = Store.sqlite(tmp_path / "fresh.db") if store.dialect == "sqlite" else store
    if fresh is not store:
        fresh.init()
    else:
        with store.engine.begin() as conn:
            for table in ("strategy_strategy", "strategy_currency"):
                conn.exec_driver_sql(f"DROP TABLE `{table}`")
                conn.exec_driver_sql(f"RENAME TABLE `mine_{table}` TO `{table}`")
    run_sql(fresh, seed_inserts)
    assert [(r.id, r.strategy_name, r.error) for r in fresh.load_markets()] == [
        ("879_1", "external_index_follow", ""),
        ("880_1", "external_index_follow", ""),
    ]
    if fresh is not store:
        fresh.close()


def _sqlite_columns(store: Store, table: str) -> list[tuple[Any, ...]]:
    """(name, type affinity, not null, default, primary key) of each column."""
    with store.engine.connect() as conn:
        info = conn.exec_driver_sql(f"PRAGMA table_info({table})").all()
    # An INTEGER PRIMARY KEY is the rowid: never NULL, whether or not it says NOT NULL.
    return [
        (r[1], _affinity(r[2]), r[3] or r[5], None if r[4] is None else r[4].strip("'"), r[5]) for r in info
    ]


def _affinity(declared: str) -> str:
    declared = declared.upper()
    if "INT" in declared:
        return "INTEGER"
    if any(word in declared for word in ("CHAR", "CLOB", "TEXT", "JSON")):
        return "TEXT"
    return declared


# --------------------------------------------------------------------------------------------------------------
# The demo, overrides, descriptions
# --------------------------------------------------------------------------------------------------------------


def test_the_demo_written_twice_is_written_once(store: Store) -> None:
    store.init()
    write_demo(store)
    write_demo(store)
    assert len(all_rows(store, "strategy_strategy")) == 1
    assert len(all_rows(store, "strategy_currency")) == 2
    assert len(all_rows(store, "mmframe_market")) == 2

    rows = store.load_markets()
    assert [(r.id, r.index_symbol) for r in rows] == [("9001_1", "BTCUSDT"), ("9002_1", "ETHUSDT")]
    for row, m in zip(rows, DEMO_MARKETS, strict=True):
        assert row.error == ""
        assert (row.index_source, row.market_status, row.market_type) == (0, 1, 1)
        assert row.strategy_name == "external_index_follow"
        assert row.effective_config == demo_strategy_config(m)
        assert row.description is not None
        assert row.description == MarketDescription(
            symbol=m["symbol"],
            tick_size=m["tick_size"],
            price_precision=m["price_precision"],
            quantity_precision=m["quantity_precision"],
            min_quantity=m["min_quantity"],
            options={
                "feed": "sim",
                "feed_config": demo_feed_config(),
                "risk": {"max_order_quantity": m["max_order"], "price_band": "0.05"},
                "tolerance": {},
            },
        )
        market = row.description.market(row.market_type)
        assert market.symbol == m["symbol"] and str(market.tick_size) == "0.1"
    assert rows[0].strategy_id == rows[1].strategy_id


def test_the_demo_next_to_the_seed_rows(store: Store) -> None:
    run_sql(store, SEED_SQL)
    store.init()
    write_demo(store)
    assert [r.id for r in store.load_markets()] == ["879_1", "880_1", "9001_1", "9002_1"]
    assert all(r.error == "" for r in store.load_markets())


def test_overrides_are_saved_merged_and_replaced(store: Store) -> None:
    run_sql(store, SEED_SQL)
    store.init()
    store.save_override(879, 1, {"base_quantity": 5, "maintenance_interval": "2s"})
    row = store.load_market(879, 1)
    assert row is not None and row.error == ""
    assert row.overrides == {"base_quantity": 5, "maintenance_interval": "2s"}
    assert row.strategy_config["base_quantity"] == 10
    assert row.effective_config["base_quantity"] == 5
    assert row.effective_config["maintenance_interval"] == "2s"
    assert row.effective_config["tick_size"] == 0.1
    other = store.load_market(880, 1)
    assert other is not None and other.overrides == {}

    store.save_override(879, 1, {"tick_size": Decimal("0.50")})
    row = store.load_market(879, 1)
    assert row is not None
    assert row.overrides == {"tick_size": "0.50"}
    assert row.effective_config["base_quantity"] == 10
    assert len(all_rows(store, "mmframe_config_override")) == 1

    store.delete_override(879, 1)
    row = store.load_market(879, 1)
    assert row is not None and row.overrides == {}


def test_market_descriptions_are_inserted_and_updated(store: Store) -> None:
    run_sql(store, SEED_SQL)
    store.init()
    description = MarketDescription("BTC/USDT", Decimal("0.1"), 1, 5, "0.00001", {"feed": "binance"})
    store.save_market(879, 1, description)
    row = store.load_market(879, 1)
    assert row is not None and row.description == description and row.error == ""
    assert row.description.tick_size == "0.1"

    updated = MarketDescription("BTC/USDT", "0.01", 2, 5, options={"feed": "redis", "feed_config": {"db": 0}})
    store.save_market(879, 1, updated)
    row = store.load_market(879, 1)
    assert row is not None and row.description == updated
    assert len(all_rows(store, "mmframe_market")) == 1


# --------------------------------------------------------------------------------------------------------------
# Bad rows
# --------------------------------------------------------------------------------------------------------------


def _try_sql(store: Store, statement: str) -> bool:
    try:
        with store.engine.begin() as conn:
            conn.exec_driver_sql(statement)
    except DBAPIError:
        return False
    return True


def test_bad_rows_carry_an_error_and_never_stop_the_others(store: Store) -> None:
    store.init()
    run_sql(
        store,
        """
        INSERT INTO strategy_strategy (id, strategy_name, config, `desc`) VALUES (1, 'good', '{"a": 1}', NULL);
        INSERT INTO strategy_strategy (id, strategy_name, config, `desc`) VALUES (3, 'a_list', '[1,2]', NULL);
        INSERT INTO strategy_currency (currency_id, index_symbol, market_type, default_strategy) VALUES
        (100, 'GOODUSDT', 1, 1),
        (101, 'NOSTRATUSDT', 1, 99),
        (103, 'LISTUSDT', 1, 3),
        (104, 'BADOVERRIDEUSDT', 1, 1),
        (105, 'BADOPTIONSUSDT', 1, 1),
        (106, 'BADTICKUSDT', 1, 1),
        (100, 'GOODUSDT', 1, 1);
        INSERT INTO mmframe_config_override (currency_id, market_type, config, updated_at) VALUES
        (104, 1, '{oops', 0);
        INSERT INTO mmframe_market (currency_id, market_type, symbol, tick_size, price_precision,
            quantity_precision, min_quantity, options) VALUES
        (105, 1, 'BAD/OPTIONS', '0.01', 2, 2, '0', 'not json'),
        (106, 1, 'BAD/TICK', 'abc', 2, 2, '0', NULL);
        """,
    )
    # MariaDB's json_valid CHECK may refuse a config that is not JSON at all: then only the list case is tested.
    invalid_json = _try_sql(
        store, "INSERT INTO strategy_strategy (id, strategy_name, config) VALUES (2, 'broken', '{not json')"
    )
    if store.dialect == "sqlite":
        assert invalid_json
    if invalid_json:
        run_sql(
            store,
            "INSERT INTO strategy_currency (currency_id, index_symbol, market_type, default_strategy) "
            "VALUES (102, 'BROKENUSDT', 1, 2)",
        )

    loaded = store.load_markets()
    rows = {}
    for r in loaded:
        rows.setdefault(r.id, r)
    expected = {"100_1", "101_1", "103_1", "104_1", "105_1", "106_1"} | ({"102_1"} if invalid_json else set())
    assert set(rows) == expected
    assert len(loaded) == len(expected) + 1  # the duplicate 100_1 row is returned too

    good = rows["100_1"]
    assert good.error == "" and good.strategy_name == "good" and good.strategy_config == {"a": 1}
    # The second row for 100_1 is flagged; the first one is the market.
    duplicate = next(r for r in loaded if r.id == "100_1" and r is not good)
    assert duplicate.id == "100_1" and "already defined by strategy_currency id=1" in duplicate.error
    first = store.load_market(100, 1)
    assert first is not None and first.error == "" and first.row_id == 1

    missing = rows["101_1"]
    assert missing.strategy_name is None and missing.strategy_config == {}
    assert "default_strategy=99 does not exist in strategy_strategy" in missing.error
    assert "strategy_currency id=2" in missing.error

    not_object = rows["103_1"]
    assert not_object.strategy_name == "a_list" and not_object.strategy_config == {}
    assert "strategy_strategy id=3" in not_object.error and "column config must be a JSON object" in not_object.error

    if invalid_json:
        broken = rows["102_1"]
        assert "strategy_strategy id=2" in broken.error and "column config is not valid JSON" in broken.error

    bad_override = rows["104_1"]
    assert "mmframe_config_override (currency_id=104, market_type=1) column config is not valid JSON" in (
        bad_override.error
    )
    assert bad_override.overrides == {} and bad_override.strategy_config == {"a": 1}

    bad_options = rows["105_1"]
    assert "mmframe_market (currency_id=105, market_type=1) column options is not valid JSON" in bad_options.error
    assert bad_options.description is not None and bad_options.description.options == {}

    bad_tick = rows["106_1"]
    assert "mmframe_market (currency_id=106, market_type=1)" in bad_tick.error and "tick_size" in bad_tick.error


# --------------------------------------------------------------------------------------------------------------
# Audit
# --------------------------------------------------------------------------------------------------------------


def _events() -> list[OrderEventRecord]:
    return [
        OrderEventRecord(
            market_id="9001_1",
            symbol="BTC/USDT",
            market_type=1,
            client_order_id="mmA-1",
            kind=OrderEventKind.ACCEPTED,
            status=OrderStatus.OPEN,
            side=Side.BUY,
            order_type=OrderType.LIMIT,
            price=Decimal("60000.10"),
            quantity=Decimal("0.0100"),
            filled_quantity=Decimal("0"),
            order_id="E1",
            timestamp=1718000000.123456,
        ),
        OrderEventRecord(
            market_id="9001_1",
            symbol="BTC/USDT",
            market_type=1,
            client_order_id="mmA-1",
            kind="partially_filled",
            status="partially_filled",
            side="buy",
            order_type="limit",
            price="60000.10",
            quantity="0.0100",
            filled_quantity="0.0040",
            order_id="E1",
            timestamp=1718000001.5,
        ),
        OrderEventRecord(
            market_id="9002_2",
            symbol="ETH/USDT",
            market_type=2,
            client_order_id="mmB-7",
            kind=OrderEventKind.EXPIRED,
            status=OrderStatus.EXPIRED,
            side=Side.SELL,
            order_type=OrderType.MARKET,
            price=None,
            quantity=Decimal("0.00000001"),
            reason="no liquidity: 流动性不足",
            timestamp=1718000000.5,
        ),
    ]


def _fills() -> list[FillRecord]:
    return [
        FillRecord("9001_1", "BTC/USDT", 1, "T2", "mmA-1", Side.BUY, Decimal("60000.10"), Decimal("0.0040"),
                   Liquidity.MAKER, Decimal("-0.0012"), 1718000001.5),
        FillRecord("9002_2", "ETH/USDT", 2, "T1", "mmB-7", Side.SELL, Decimal("3000.00"), Decimal("1E-8"),
                   Liquidity.TAKER, Decimal("0"), 1718000000.25),
        FillRecord("9001_1", "BTC/USDT", 1, "T3", "mmA-1", "buy", "60000.1", "0.0060", "maker", "0", 1718000002.0),
    ]


def _exact(record: Any) -> tuple[tuple[str, Any], ...]:
    """A record's fields with decimals as their exact text (Decimal equality ignores trailing zeros)."""
    values = ((a.name, getattr(record, a.name)) for a in attrs.fields(type(record)))
    return tuple((name, str(v) if isinstance(v, Decimal) else v) for name, v in values)


def test_audit_round_trips_exactly(store: Store) -> None:
    store.init()
    assert store.fills() == [] and store.order_events() == []
    events, fills = _events(), _fills()
    store.record(events[:2], fills[:1])
    store.record(events[2:], fills[1:])
    store.record([], [])

    by_time = sorted(events, key=lambda e: e.timestamp)
    assert [_exact(e) for e in store.order_events()] == [_exact(e) for e in by_time]
    assert [_exact(e) for e in store.order_events("mmA-1")] == [_exact(e) for e in events[:2]]
    assert store.order_events("nope") == []

    read = store.fills()
    assert [f.trade_id for f in read] == ["T1", "T2", "T3"]
    assert [_exact(f) for f in read] == [_exact(f) for f in sorted(fills, key=lambda f: f.timestamp)]
    t2 = read[1]
    assert str(t2.price) == "60000.10" and str(t2.quantity) == "0.0040" and str(t2.fee) == "-0.0012"
    assert t2.timestamp == 1718000001.5
    assert store.fills(symbol="ETH/USDT")[0].quantity == Decimal("0.00000001")
    assert [f.trade_id for f in store.fills(symbol="BTC/USDT", market_type=1)] == ["T2", "T3"]
    assert store.fills(symbol="BTC/USDT", market_type=2) == []
    assert [f.trade_id for f in store.fills(market_type=2)] == ["T1"]
    assert store.order_events()[0].timestamp == 1718000000.123456
    # What the database holds: exact, exponent-free strings.
    with store.engine.connect() as conn:
        texts = conn.exec_driver_sql("SELECT price, quantity, fee FROM mmframe_fill ORDER BY id").all()
    assert [tuple(t) for t in texts] == [
        ("60000.10", "0.0040", "-0.0012"),
        ("3000.00", "0.00000001", "0"),
        ("60000.1", "0.0060", "0"),
    ]


def test_records_are_built_from_the_engine_models() -> None:
    fill = Fill("T9", "mmA-9", "BTC/USDT", Side.SELL, "60000.10", "0.5", Liquidity.TAKER, "0.03", 17.5)
    record = FillRecord.from_fill(fill, market_id="9001_1", market_type=1)
    assert (record.trade_id, str(record.price), record.liquidity, record.timestamp) == (
        "T9", "60000.10", Liquidity.TAKER, 17.5
    )
    request = OrderRequest("mmA-9", "BTC/USDT", Side.SELL, OrderType.LIMIT, "1", "60000.10")
    order = Order(request, status=OrderStatus.PARTIALLY_FILLED, filled_quantity=Decimal("0.5"), order_id="E9")
    event = OrderEvent(OrderEventKind.PARTIALLY_FILLED, "mmA-9", "BTC/USDT", "0.5", fill=fill, timestamp=17.5)
    er = OrderEventRecord.from_event(event, order, market_id="9001_1", market_type=1)
    assert (er.kind, er.status, er.side, er.order_type, er.order_id) == (
        OrderEventKind.PARTIALLY_FILLED, OrderStatus.PARTIALLY_FILLED, Side.SELL, OrderType.LIMIT, "E9"
    )
    assert (str(er.price), str(er.quantity), str(er.filled_quantity)) == ("60000.10", "1", "0.5")


# --------------------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------------------


def test_an_unreachable_database_raises_store_error_without_the_password() -> None:
    store = Store("mysql+pymysql://mm:s3cret@127.0.0.1:1/mmframe_test_nowhere?charset=utf8mb4")
    assert "s3cret" not in store.url_for_display and "***" in store.url_for_display
    assert "s3cret" not in repr(store)
    for call in (store.init, store.load_markets, store.ping, lambda: store.record(_events(), [])):
        with pytest.raises(StoreError) as info:
            call()
        message = str(info.value)
        assert isinstance(info.value, MMFrameError)
        assert "s3cret" not in message
        assert "mysql+pymysql://mm:***@127.0.0.1:1/mmframe_test_nowhere" in message
        assert "2003" in message or "connect" in message.lower()  # the driver's reason
    store.close()


def test_a_password_with_special_characters_and_a_bad_url() -> None:
    store = Store.mysql(host="127.0.0.1", port=1, database="mmframe_test_x", username="mm", password="s3cret@/:x")
    with pytest.raises(StoreError) as info:
        store.ping()
    assert "s3cret" not in str(info.value) and "127.0.0.1:1" in str(info.value)
    with pytest.raises(StoreError) as bad:
        Store("not a url with s3cret")
    assert "s3cret" not in str(bad.value)
    with pytest.raises(StoreError) as driver:
        Store("nosuchdb+nodriver://u:s3cret@h/db")
    assert "s3cret" not in str(driver.value)


def test_an_sqlite_file_that_cannot_be_opened(tmp_path: Path) -> None:
    store = Store.sqlite(tmp_path / "no" / "such" / "dir" / "mmframe.db")
    with pytest.raises(StoreError, match="unable to open database file"):
        store.init()
