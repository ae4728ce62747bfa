"""The seed's SQL (seeds/000) verbatim, and how to run it: as is on MariaDB, mechanically adapted on SQLite."""

from __future__ import annotations

import json
import re

from mmframe._store import Store, seed_sql
from mmframe.testing import mysql_to_sqlite as mysql_to_sqlite
from mmframe.testing import run_sql as run_sql
from mmframe.testing import split_sql as split_sql

# The seed's SQL (seeds/000), verbatim, as mmframe ships it.
SEED_SQL = seed_sql()


def apply_seed_sql(url: str) -> None:
    """Create the seed's two tables and rows in the database at *url*, with the seed's own statements."""
    store = Store(url)
    try:
        run_sql(store, SEED_SQL)
    finally:
        store.close()


SEED_CONFIG = json.loads(re.search(r"'(\{.*?\})',", SEED_SQL, re.S).group(1))  # type: ignore[union-attr]
