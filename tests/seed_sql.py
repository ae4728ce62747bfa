"""The seed's SQL (seeds/000) verbatim, and how to run it: as is on MariaDB, mechanically adapted on SQLite."""

from __future__ import annotations

import json
import re

from mmframe.store import Store

# The seed's SQL (seeds/000), copied verbatim: its two CREATE TABLE statements and its two INSERTs.
SEED_SQL = """\
CREATE TABLE `strategy_currency` (
`id` int NOT NULL AUTO_INCREMENT,
`currency_id` int NOT NULL COMMENT '币种ID',
`index_symbol` varchar(50) NOT NULL COMMENT '跟随外部币种符号',
`index_source` tinyint NOT NULL DEFAULT '0' COMMENT '0内部 1外部',
`market_status` tinyint NOT NULL DEFAULT '0' COMMENT '是否启用内部做市',
`market_type` tinyint NOT NULL COMMENT '市场类型:1现货 2杠杆',
`default_strategy` int NOT NULL COMMENT '默认应用策略id',
PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE `strategy_strategy` (
`id` int NOT NULL AUTO_INCREMENT,
`strategy_name` varchar(100) NOT NULL COMMENT '策略名称',
`config` json NOT NULL COMMENT '策略配置参数',
`desc` text COMMENT '策略介绍',
PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
INSERT INTO strategy_strategy (strategy_name, config, `desc`) VALUES (
'external_index_follow',
'{
"price_change_amount": 1.0,
"tick_size": 0.1,
"base_quantity": 10,
"price_follow_percent": 100.0,
"base_precision": 2,
"quote_precision": 4,
"max_active_orders": 100,
"maintenance_interval": "1s",
"depth_levels": [
{"spread_percent": 0.0001, "quantity_ratio": 1.0},
{"spread_percent": 0.0002, "quantity_ratio": 0.95},
{"spread_percent": 0.0005, "quantity_ratio": 0.9},
{"spread_percent": 0.001, "quantity_ratio": 0.85},
{"spread_percent": 0.015, "quantity_ratio": 0.75},
{"spread_percent": 0.02, "quantity_ratio": 0.65},
{"spread_percent": 0.025, "quantity_ratio": 0.55},
{"spread_percent": 0.03, "quantity_ratio": 0.45},
{"spread_percent": 0.035, "quantity_ratio": 0.35},
{"spread_percent": 0.04, "quantity_ratio": 0.25}
]
}',
'外部指数跟随策略'
);
INSERT INTO strategy_currency (currency_id, index_symbol, index_source, market_status, market_type, default_strategy) VALUES
(879, 'BTCUSDT', 1, 1, 1, 1), -- BTC/USDT 现货
(880, 'ETHUSDT', 1, 1, 1, 1); -- ETH/USDT 现货
"""  # noqa: E501 (verbatim)


# --------------------------------------------------------------------------------------------------------------
# Running raw SQL: the seed's MySQL text verbatim on MariaDB, mechanically adapted on SQLite.
# --------------------------------------------------------------------------------------------------------------


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


def run_sql(store: Store, script: str) -> None:
    """Run a MySQL script on *store*: verbatim on MySQL/MariaDB, adapted on SQLite."""
    for statement in split_sql(script):
        if store.dialect == "sqlite":
            statement = mysql_to_sqlite(statement)
        with store.engine.begin() as conn:
            conn.exec_driver_sql(statement)


def apply_seed_sql(url: str) -> None:
    """Create the seed's two tables and rows in the database at *url*, with the seed's own statements."""
    store = Store(url)
    try:
        run_sql(store, SEED_SQL)
    finally:
        store.close()


SEED_CONFIG = json.loads(re.search(r"'(\{.*?\})',", SEED_SQL, re.S).group(1))  # type: ignore[union-attr]
