"""The seed's SQL in a test database: split it, adapt it for SQLite, run it; seed a database for a service."""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

__all__ = ["describe_market", "mysql_to_sqlite", "run_sql", "seed_database", "seed_sql", "split_sql"]


def seed_sql() -> str:
    """The seed's SQL (``seeds/000``) verbatim, as mmframe ships it: its two ``CREATE TABLE`` statements
    (``strategy_strategy``, ``strategy_currency``) and its ``INSERT`` s (the ``external_index_follow`` strategy and
    the currencies 879 BTCUSDT and 880 ETHUSDT), as MySQL/MariaDB runs it."""
    from .._store import seed_sql as _seed_sql

    return _seed_sql()


def split_sql(script: str) -> list[str]:
    """Split a script on the ``;`` outside string literals; drop fragments that are only comments."""
    statements, current, quoted = [], [], False
    for ch in script:
        if ch == "'":
            quoted = not quoted
        if ch == ";" and not quoted:
            statements.append("".join(current))
            current = []
        else:
            current.append(ch)
    statements.append("".join(current))
    out = []
    for statement in statements:
        code = "\n".join(line for line in statement.splitlines() if not line.strip().startswith("--"))
        if code.strip():
            out.append(statement.strip())
    return out


def mysql_to_sqlite(statement: str) -> str:
    """Adapt one MySQL statement of the seed for SQLite. Only CREATE TABLE needs changes."""
    if not statement.lstrip().upper().startswith("CREATE TABLE"):
        return statement.replace("`", '"')
    s = re.sub(r"\s+COMMENT\s+'(?:[^']|'')*'", "", statement)
    s = re.sub(r"\)\s*ENGINE=[^\n]*$", ")", s.rstrip())
    s = s.replace("`", '"')
    s = re.sub(r'"id" int NOT NULL AUTO_INCREMENT', '"id" INTEGER PRIMARY KEY AUTOINCREMENT', s)
    s = re.sub(r',\s*PRIMARY KEY \("id"\)', "", s)
    s = re.sub(r"\bjson\b", "TEXT", s)
    assert "AUTO_INCREMENT" not in s and "COMMENT" not in s, s
    return s


def _store(database: Any) -> tuple[Any, bool]:
    """``(store, opened here)`` for a database URL or an already open store."""
    if isinstance(database, str):
        from .._store import Store

        return Store(database), True
    return database, False


def run_sql(database: Any, script: str) -> None:
    """Run a MySQL script (the seed's SQL, :func:`seed_sql`) on a database: verbatim on MySQL/MariaDB, mechanically
    adapted on SQLite.

    :param database: a SQLAlchemy database URL (``sqlite:///path``, ``mysql+pymysql://...``), or a store.
    """
    store, opened = _store(database)
    try:
        for statement in split_sql(script):
            if store.dialect == "sqlite":
                statement = mysql_to_sqlite(statement)
            with store.engine.begin() as conn:
                conn.exec_driver_sql(statement)
    finally:
        if opened:
            store.close()


def seed_database(database_url: str, *scripts: str, seed: bool = True) -> None:
    """Prepare the database at *database_url* for :func:`~mmframe.testing.run_service`: the seed's tables and rows
    (:func:`seed_sql`, unless *seed* is false), then each of *scripts* (MySQL, adapted on SQLite like
    :func:`run_sql`: more ``strategy_strategy`` and ``strategy_currency`` rows, say), then mmframe's own tables.

    ::

        seed_database(f"sqlite:///{tmp_path / 'mm.sqlite'}", GRID_ROWS_SQL)
    """
    from .._store import Store

    store = Store(database_url)
    try:
        if seed:
            run_sql(store, seed_sql())
        for script in scripts:
            run_sql(store, script)
        store.init()
    finally:
        store.close()


def describe_market(
    database_url: str,
    currency_id: int,
    market_type: int = 1,
    *,
    symbol: str,
    tick_size: Decimal | str,
    price_precision: int,
    quantity_precision: int,
    min_quantity: Decimal | str = "0",
    options: Mapping[str, Any] | None = None,
) -> None:
    """Store a market's local description (the ``mmframe_market`` row) for the seed's currency *currency_id*: its
    symbol on our exchange, tick grid and precisions, and its engine *options* (``risk``, ``feed``,
    ``refresh_interval``, ...). The database must have mmframe's tables (:func:`seed_database` makes them)."""
    from .._store import Store

    store = Store(database_url)
    try:
        save_description(store, currency_id, market_type, symbol=symbol, tick_size=tick_size,
                         price_precision=price_precision, quantity_precision=quantity_precision,
                         min_quantity=min_quantity, options=options)
    finally:
        store.close()


def save_description(store: Any, currency_id: int, market_type: int, **description: Any) -> None:
    """:func:`describe_market`'s write, on an open store (the service's own, for a running service)."""
    from .._store import MarketDescription

    options = description.pop("options", None)
    store.save_market(currency_id, market_type, MarketDescription(**description, options=dict(options or {})))
