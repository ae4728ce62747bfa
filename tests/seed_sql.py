"""The seed's SQL (seeds/000) verbatim, and how to run it: as is on MariaDB, mechanically adapted on SQLite."""

from __future__ import annotations

import json
import re

from mmframe.store import Store, seed_sql

# The seed's SQL (seeds/000), verbatim, as mmframe ships it.
SEED_SQL = seed_sql()


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
