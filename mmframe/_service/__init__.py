"""The service layer: markets from the store, run by the engine (:mod:`.service`), database rows turned into
market specs (:mod:`.specs`), and the audit trail (:mod:`.audit`). It knows nothing of HTTP or the command line:
``mmframe serve`` (:mod:`mmframe._cli`) runs it beside the control API (:mod:`mmframe._control`)."""

from __future__ import annotations

from .audit import AuditTrail as AuditTrail
from .service import ACTIVE as ACTIVE
from .service import MarketRecord as MarketRecord
from .service import ReloadRefused as ReloadRefused
from .service import Service as Service
from .service import UnknownMarket as UnknownMarket
from .specs import MarketOptions as MarketOptions
from .specs import choose_feed as choose_feed
from .specs import market_from_row as market_from_row
from .specs import spec_from_row as spec_from_row

__all__ = [
    "AuditTrail",
    "MarketOptions",
    "MarketRecord",
    "ReloadRefused",
    "Service",
    "UnknownMarket",
    "choose_feed",
    "market_from_row",
    "spec_from_row",
]

