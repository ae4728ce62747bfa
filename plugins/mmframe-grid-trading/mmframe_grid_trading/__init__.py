"""``grid_trading``: mmframe's grid strategy, a slot per grid price with a buy window and a sell window, as a plugin.

The distribution's entry point ``grid_trading`` in the group ``mmframe`` names this module; mmframe registers it as
a plugin and calls :func:`register_strategies`. See ``README.md`` for the configuration,
:mod:`mmframe_grid_trading.strategy` for what the strategy does and :mod:`mmframe_grid_trading.slots` for the
slots' state machine.
"""

from __future__ import annotations

from collections.abc import Callable

from mmframe import hookimpl

from .config import DEFAULT_WINDOW, Config
from .slots import Grid, LockStatus, Lot, OrderState, PositionStatus, Sale, Slot, SlotState
from .strategy import GridTrading

__all__ = [
    "DEFAULT_WINDOW",
    "Config",
    "Grid",
    "GridTrading",
    "LockStatus",
    "Lot",
    "OrderState",
    "PositionStatus",
    "Sale",
    "Slot",
    "SlotState",
    "register_strategies",
]

__version__ = "0.1.0"


@hookimpl
def register_strategies(register: Callable[..., None]) -> None:
    register(GridTrading)
