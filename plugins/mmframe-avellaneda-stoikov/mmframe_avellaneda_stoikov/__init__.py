"""``avellaneda_stoikov`` and ``glft``: mmframe's inventory-aware market-making strategies, as a plugin.

- ``avellaneda_stoikov``: Avellaneda & Stoikov (2008), quotes around a reservation price that moves against the
  inventory, over a finite or a rolling horizon; or the paper's symmetric benchmark.
- ``glft``: Guéant, Lehalle & Fernandez-Tapia (2013), the closed-form asymptotic quotes of the infinite-horizon
  problem with inventory bounds.

The distribution's entry point ``avellaneda_stoikov`` in the group ``mmframe`` names this module; mmframe registers
it as a plugin and calls :func:`register_strategies`. See ``README.md`` for the configuration,
:mod:`mmframe_avellaneda_stoikov.models` for the formulas, :mod:`mmframe_avellaneda_stoikov.estimators` for the
online estimates of ``sigma``, ``A`` and ``k`` and :mod:`mmframe_avellaneda_stoikov.strategy` for the quoting.
"""

from __future__ import annotations

from collections.abc import Callable

from mmframe import hookimpl

from .config import HORIZON_MODES, MODES, AvellanedaStoikovConfig, CommonConfig, GLFTConfig
from .estimators import IntensityEstimate, IntensityEstimator, VolatilityEstimate, VolatilityEstimator
from .strategy import GLFT, AvellanedaStoikov, ModelStrategy, Parameters, to_grid

__all__ = [
    "GLFT",
    "HORIZON_MODES",
    "MODES",
    "AvellanedaStoikov",
    "AvellanedaStoikovConfig",
    "CommonConfig",
    "GLFTConfig",
    "IntensityEstimate",
    "IntensityEstimator",
    "ModelStrategy",
    "Parameters",
    "VolatilityEstimate",
    "VolatilityEstimator",
    "register_strategies",
    "to_grid",
]

__version__ = "0.1.0"


@hookimpl
def register_strategies(register: Callable[..., None]) -> None:
    register(AvellanedaStoikov)
    register(GLFT)
