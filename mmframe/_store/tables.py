"""mmframe's database tables: the seed's two configuration tables, exactly as the seed defines them, and mmframe's
own tables (prefix ``mmframe_``) for what the seed's tables lack.

Every table lives on one private :class:`~sqlalchemy.MetaData` (:data:`metadata`), never on SQLModel's global one.
Decimals are stored as strings (exact on every backend); JSON is stored as text and parsed by the store, so a
broken value breaks only its own row. Epoch timestamps are ``DOUBLE`` (a MySQL ``FLOAT`` would lose seconds).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Column,
    Double,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

__all__ = [
    "SEED_DDL_MYSQL",
    "SEED_TABLES",
    "ConfigOverrideTable",
    "FillTable",
    "MarketDescriptionTable",
    "OrderEventTable",
    "StrategyCurrencyTable",
    "StrategyStrategyTable",
    "all_tables",
    "metadata",
]

_registry = registry(metadata=MetaData())
#: The private metadata every mmframe table is defined on.
metadata: MetaData = _registry.metadata

# InnoDB/utf8mb4 as the seed; on SQLite, AUTOINCREMENT so that ids are never reused (as MySQL's AUTO_INCREMENT).
_TABLE_ARGS: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "sqlite_autoincrement": True}

# The seed's ``tinyint``: TINYINT on MySQL/MariaDB, SMALLINT elsewhere.
_TinyInt = SmallInteger().with_variant(mysql.TINYINT(), "mysql", "mariadb")


class _Base(SQLModel, registry=_registry):
    """The base of mmframe's tables: keeps them on :data:`metadata`."""


# --------------------------------------------------------------------------------------------------------------
# The seed's tables (seed 000). Their definition must not change: mmframe runs against operators' existing tables.
# --------------------------------------------------------------------------------------------------------------

#: The seed's DDL for MySQL/MariaDB, verbatim except ``IF NOT EXISTS``. ``init()`` creates the seed tables on
#: MySQL/MariaDB from this text so that they are exactly the seed's definition (comments included).
SEED_DDL_MYSQL: dict[str, str] = {
    "strategy_strategy": """CREATE TABLE IF NOT EXISTS `strategy_strategy` (
`id` int NOT NULL AUTO_INCREMENT,
`strategy_name` varchar(100) NOT NULL COMMENT '策略名称',
`config` json NOT NULL COMMENT '策略配置参数',
`desc` text COMMENT '策略介绍',
PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    "strategy_currency": """CREATE TABLE IF NOT EXISTS `strategy_currency` (
`id` int NOT NULL AUTO_INCREMENT,
`currency_id` int NOT NULL COMMENT '币种ID',
`index_symbol` varchar(50) NOT NULL COMMENT '跟随外部币种符号',
`index_source` tinyint NOT NULL DEFAULT '0' COMMENT '0内部 1外部',
`market_status` tinyint NOT NULL DEFAULT '0' COMMENT '是否启用内部做市',
`market_type` tinyint NOT NULL COMMENT '市场类型:1现货 2杠杆',
`default_strategy` int NOT NULL COMMENT '默认应用策略id',
PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
}


class StrategyStrategyTable(_Base, table=True):
    """``strategy_strategy``: a named strategy and its config JSON (seed 000).

    ``config`` is ``json`` in the seed (on MariaDB an alias of ``LONGTEXT`` with a ``json_valid`` check); mmframe
    reads it as text and parses it itself.
    """

    __tablename__ = "strategy_strategy"
    __table_args__ = (_TABLE_ARGS,)

    id: int | None = Field(default=None, sa_column=Column("id", Integer, primary_key=True, autoincrement=True))
    strategy_name: str = Field(sa_column=Column("strategy_name", String(100), nullable=False))
    config: str = Field(sa_column=Column("config", Text, nullable=False))
    desc: str | None = Field(default=None, sa_column=Column("desc", Text, nullable=True))


class StrategyCurrencyTable(_Base, table=True):
    """``strategy_currency``: one market (currency and market type), its index symbol, whether it starts
    automatically (``market_status=1``) and its strategy (``default_strategy`` = ``strategy_strategy.id``)."""

    __tablename__ = "strategy_currency"
    __table_args__ = (_TABLE_ARGS,)

    id: int | None = Field(default=None, sa_column=Column("id", Integer, primary_key=True, autoincrement=True))
    currency_id: int = Field(sa_column=Column("currency_id", Integer, nullable=False))
    index_symbol: str = Field(sa_column=Column("index_symbol", String(50), nullable=False))
    index_source: int = Field(
        default=0, sa_column=Column("index_source", _TinyInt, nullable=False, server_default=text("0"))
    )
    market_status: int = Field(
        default=0, sa_column=Column("market_status", _TinyInt, nullable=False, server_default=text("0"))
    )
    market_type: int = Field(sa_column=Column("market_type", _TinyInt, nullable=False))
    default_strategy: int = Field(sa_column=Column("default_strategy", Integer, nullable=False))


# --------------------------------------------------------------------------------------------------------------
# mmframe's own tables.
# --------------------------------------------------------------------------------------------------------------


class MarketDescriptionTable(_Base, table=True):
    """``mmframe_market``: what the seed's tables do not say about a market: its local symbol, tick grid and
    precisions, and its engine options (feed, feed_config, risk, tolerance; JSON text, opaque to the store)."""

    __tablename__ = "mmframe_market"
    __table_args__ = (
        UniqueConstraint("currency_id", "market_type", name="uq_mmframe_market_currency"),
        _TABLE_ARGS,
    )

    id: int | None = Field(default=None, sa_column=Column("id", Integer, primary_key=True, autoincrement=True))
    currency_id: int = Field(sa_column=Column("currency_id", Integer, nullable=False))
    market_type: int = Field(sa_column=Column("market_type", Integer, nullable=False))
    symbol: str = Field(sa_column=Column("symbol", String(50), nullable=False))
    tick_size: str = Field(sa_column=Column("tick_size", String(64), nullable=False))
    price_precision: int = Field(sa_column=Column("price_precision", Integer, nullable=False))
    quantity_precision: int = Field(sa_column=Column("quantity_precision", Integer, nullable=False))
    min_quantity: str = Field(
        default="0", sa_column=Column("min_quantity", String(64), nullable=False, server_default="0")
    )
    options: str | None = Field(default=None, sa_column=Column("options", Text, nullable=True))


class ConfigOverrideTable(_Base, table=True):
    """``mmframe_config_override``: strategy-config keys that override the strategy's config for one market
    (JSON object text), e.g. written by ``POST /api/v1/strategy/config/update``."""

    __tablename__ = "mmframe_config_override"
    __table_args__ = (
        UniqueConstraint("currency_id", "market_type", name="uq_mmframe_config_override_currency"),
        _TABLE_ARGS,
    )

    id: int | None = Field(default=None, sa_column=Column("id", Integer, primary_key=True, autoincrement=True))
    currency_id: int = Field(sa_column=Column("currency_id", Integer, nullable=False))
    market_type: int = Field(sa_column=Column("market_type", Integer, nullable=False))
    config: str = Field(sa_column=Column("config", Text, nullable=False))
    updated_at: float = Field(sa_column=Column("updated_at", Double, nullable=False))


class OrderEventTable(_Base, table=True):
    """``mmframe_order_event``: the append-only audit of our orders' events."""

    __tablename__ = "mmframe_order_event"
    __table_args__ = (
        Index("ix_mmframe_order_event_client_order_id", "client_order_id"),
        _TABLE_ARGS,
    )

    id: int | None = Field(default=None, sa_column=Column("id", Integer, primary_key=True, autoincrement=True))
    market_id: str = Field(sa_column=Column("market_id", String(50), nullable=False))
    symbol: str = Field(sa_column=Column("symbol", String(50), nullable=False))
    market_type: int = Field(sa_column=Column("market_type", Integer, nullable=False))
    client_order_id: str = Field(sa_column=Column("client_order_id", String(100), nullable=False))
    order_id: str | None = Field(default=None, sa_column=Column("order_id", String(100), nullable=True))
    kind: str = Field(sa_column=Column("kind", String(20), nullable=False))
    status: str = Field(sa_column=Column("status", String(20), nullable=False))
    side: str = Field(sa_column=Column("side", String(10), nullable=False))
    order_type: str = Field(sa_column=Column("order_type", String(20), nullable=False))
    price: str | None = Field(default=None, sa_column=Column("price", String(64), nullable=True))
    quantity: str = Field(sa_column=Column("quantity", String(64), nullable=False))
    filled_quantity: str = Field(sa_column=Column("filled_quantity", String(64), nullable=False))
    reason: str = Field(default="", sa_column=Column("reason", Text, nullable=False))
    timestamp: float = Field(sa_column=Column("timestamp", Double, nullable=False))


class FillTable(_Base, table=True):
    """``mmframe_fill``: every execution of our orders, for audit and PnL."""

    __tablename__ = "mmframe_fill"
    __table_args__ = (
        Index("ix_mmframe_fill_client_order_id", "client_order_id"),
        Index("ix_mmframe_fill_symbol_market_type", "symbol", "market_type"),
        _TABLE_ARGS,
    )

    id: int | None = Field(default=None, sa_column=Column("id", Integer, primary_key=True, autoincrement=True))
    market_id: str = Field(sa_column=Column("market_id", String(50), nullable=False))
    symbol: str = Field(sa_column=Column("symbol", String(50), nullable=False))
    market_type: int = Field(sa_column=Column("market_type", Integer, nullable=False))
    trade_id: str = Field(sa_column=Column("trade_id", String(100), nullable=False))
    client_order_id: str = Field(sa_column=Column("client_order_id", String(100), nullable=False))
    side: str = Field(sa_column=Column("side", String(10), nullable=False))
    price: str = Field(sa_column=Column("price", String(64), nullable=False))
    quantity: str = Field(sa_column=Column("quantity", String(64), nullable=False))
    liquidity: str = Field(sa_column=Column("liquidity", String(10), nullable=False))
    fee: str = Field(default="0", sa_column=Column("fee", String(64), nullable=False))
    timestamp: float = Field(sa_column=Column("timestamp", Double, nullable=False))


#: The seed's tables, which ``init()`` creates only when missing and never alters.
SEED_TABLES: tuple[str, ...] = ("strategy_strategy", "strategy_currency")


def all_tables() -> list[Table]:
    """Every table mmframe uses, the seed's first, in creation order."""
    models: list[Any] = [
        StrategyStrategyTable,
        StrategyCurrencyTable,
        MarketDescriptionTable,
        ConfigOverrideTable,
        OrderEventTable,
        FillTable,
    ]
    return [model.__table__ for model in models]
