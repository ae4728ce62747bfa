"""mmframe: market making on an exchange's own matching engine, on trio, extended with pluggy plugins.

A plugin author's first import is ``from mmframe import hookimpl``.
"""

from __future__ import annotations

from ._engine.risk import RiskContext as RiskContext
from ._engine.risk import RiskLimits as RiskLimits
from ._engine.spec import MarketHalted as MarketHalted
from ._engine.spec import MarketSpec as MarketSpec
from ._engine.spec import MarketState as MarketState
from ._engine.spec import MarketStatus as MarketStatus
from ._engine.spec import RestartPolicy as RestartPolicy
from ._errors import ConfigError as ConfigError
from ._errors import InvalidTransition as InvalidTransition
from ._errors import MMFrameError as MMFrameError
from ._errors import PluginError as PluginError
from ._errors import UnknownPlugin as UnknownPlugin
from ._hookspecs import hookimpl as hookimpl
from ._models import AmendRequest as AmendRequest
from ._models import DepthSnapshot as DepthSnapshot
from ._models import Fill as Fill
from ._models import Liquidity as Liquidity
from ._models import Market as Market
from ._models import MarketData as MarketData
from ._models import MarketKey as MarketKey
from ._models import MarketType as MarketType
from ._models import Order as Order
from ._models import OrderEvent as OrderEvent
from ._models import OrderEventKind as OrderEventKind
from ._models import OrderRequest as OrderRequest
from ._models import OrderStatus as OrderStatus
from ._models import OrderType as OrderType
from ._models import PriceTick as PriceTick
from ._models import Quote as Quote
from ._models import Side as Side
from ._models import Trade as Trade
from ._models import to_decimal as to_decimal
from .config import structure_config as structure_config
from .protocols import ExchangeFeed as ExchangeFeed
from .protocols import OrderSink as OrderSink
from .protocols import Position as Position
from .protocols import Strategy as Strategy
from .protocols import StrategyContext as StrategyContext
from .protocols import Subscription as Subscription

__version__ = "0.1.0"

__all__ = [
    "AmendRequest",
    "ConfigError",
    "DepthSnapshot",
    "ExchangeFeed",
    "Fill",
    "InvalidTransition",
    "Liquidity",
    "MMFrameError",
    "Market",
    "MarketData",
    "MarketHalted",
    "MarketKey",
    "MarketSpec",
    "MarketState",
    "MarketStatus",
    "MarketType",
    "Order",
    "OrderEvent",
    "OrderEventKind",
    "OrderRequest",
    "OrderSink",
    "OrderStatus",
    "OrderType",
    "PluginError",
    "Position",
    "PriceTick",
    "Quote",
    "RestartPolicy",
    "RiskContext",
    "RiskLimits",
    "Side",
    "Strategy",
    "StrategyContext",
    "Subscription",
    "Trade",
    "UnknownPlugin",
    "__version__",
    "hookimpl",
    "structure_config",
    "to_decimal",
]
