"""``external_index_follow``: mmframe's index-following ladder strategy (the seed's main strategy), as a plugin.

The distribution's entry point ``external_index_follow`` in the group ``mmframe`` names this module; mmframe
registers it as a plugin and calls :func:`register_strategies`. See ``README.md`` for the configuration and
:mod:`mmframe_external_index_follow.strategy` for what the strategy does.
"""

from __future__ import annotations

from collections.abc import Callable

from mmframe import hookimpl

from .config import IGNORED_KEYS, MODES, Config, Level
from .strategy import SIZE_VARIATION, SWEEP_TAG, ExternalIndexFollow, build_ladder

__all__ = [
    "IGNORED_KEYS",
    "MODES",
    "SIZE_VARIATION",
    "SWEEP_TAG",
    "Config",
    "ExternalIndexFollow",
    "Level",
    "build_ladder",
    "register_strategies",
]

__version__ = "0.1.0"


@hookimpl
def register_strategies(register: Callable[..., None]) -> None:
    register(ExternalIndexFollow)
