"""mmframe: market making on an exchange's own matching engine, on trio, extended with pluggy plugins.

A plugin author's first import is ``from mmframe import hookimpl``.
"""

from __future__ import annotations

from .config import structure_config as structure_config
from .errors import ConfigError as ConfigError
from .errors import InvalidTransition as InvalidTransition
from .errors import MMFrameError as MMFrameError
from .errors import PluginError as PluginError
from .errors import UnknownPlugin as UnknownPlugin
from .hookspecs import hookimpl as hookimpl
from .models import DepthSnapshot as DepthSnapshot
from .models import Fill as Fill
from .models import Liquidity as Liquidity
from .models import Market as Market
from .models import MarketData as MarketData
from .models import MarketKey as MarketKey
from .models import MarketType as MarketType
from .models import Order as Order
from .models import OrderEvent as OrderEvent
from .models import OrderEventKind as OrderEventKind
from .models import OrderRequest as OrderRequest
from .models import OrderStatus as OrderStatus
from .models import OrderType as OrderType
from .models import PriceTick as PriceTick
from .models import Quote as Quote
from .models import Side as Side
from .models import to_decimal as to_decimal
from .protocols import ExchangeFeed as ExchangeFeed
from .protocols import OrderSink as OrderSink
from .protocols import Position as Position
from .protocols import Strategy as Strategy
from .protocols import StrategyContext as StrategyContext
from .protocols import Subscription as Subscription

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DepthSnapshot",
    "ExchangeFeed",
    "Fill",
    "InvalidTransition",
    "Liquidity",
    "MMFrameError",
    "Market",
    "MarketData",
    "MarketKey",
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
    "Side",
    "Strategy",
    "StrategyContext",
    "Subscription",
    "UnknownPlugin",
    "__version__",
    "hookimpl",
    "structure_config",
    "to_decimal",
]
