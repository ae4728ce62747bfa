"""mmframe's configuration and audit store (seed 000): the seed's ``strategy_strategy`` / ``strategy_currency``
tables exactly as the seed defines them, plus mmframe's own ``mmframe_*`` tables, on SQLite or MySQL/MariaDB.

Synchronous: call it from trio through ``trio.to_thread.run_sync``.
"""

from .store import FILL_COLUMNS as FILL_COLUMNS
from .store import ORDER_EVENT_COLUMNS as ORDER_EVENT_COLUMNS
from .store import FillRecord as FillRecord
from .store import MarketDescription as MarketDescription
from .store import MarketRow as MarketRow
from .store import OrderEventRecord as OrderEventRecord
from .store import Store as Store
from .store import StoreError as StoreError
from .store import fill_row as fill_row
from .store import market_id as market_id
from .store import order_event_row as order_event_row
from .tables import metadata as metadata


def seed_sql() -> str:
    """The seed's SQL (seeds/000) verbatim: its two ``CREATE TABLE`` statements and its ``INSERT``s (the
    ``external_index_follow`` strategy and the currencies 879 BTCUSDT and 880 ETHUSDT), as MySQL/MariaDB runs it."""
    from importlib.resources import files

    return (files(__package__) / "seed.sql").read_text(encoding="utf-8")

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
    "metadata",
    "order_event_row",
    "seed_sql",
]
