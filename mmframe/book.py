"""The matching book, public for engine-like plugins: a price-time-priority book for one symbol and simulated takers.

The in-process ``paper`` sink and the reference match engine (``mmframe-match-engine``) both run this book, so what a
strategy sees against paper is what it sees against the engine. See :class:`OrderBook` for its rules (price-time
priority, order types, self-trade prevention always on, idempotent client order ids).
"""

from __future__ import annotations

from ._book import SELF_TRADE_PREVENTION as SELF_TRADE_PREVENTION
from ._book import AmendResult as AmendResult
from ._book import Levels as Levels
from ._book import OrderBook as OrderBook
from ._book import OrderState as OrderState
from ._book import RestingOrder as RestingOrder
from ._book import SubmitResult as SubmitResult
from ._book import SubmitStatus as SubmitStatus
from ._book import Trade as Trade
from ._book import TradeParty as TradeParty
from ._takers import TakerFlow as TakerFlow
from ._takers import TakerOrder as TakerOrder

__all__ = [
    "SELF_TRADE_PREVENTION",
    "AmendResult",
    "Levels",
    "OrderBook",
    "OrderState",
    "RestingOrder",
    "SubmitResult",
    "SubmitStatus",
    "TakerFlow",
    "TakerOrder",
    "Trade",
    "TradeParty",
]
