"""Secret masking: a component's configuration as logs, statuses and reprs may show it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["SECRET_KEYS", "masked"]

#: A configuration key containing one of these (any case) holds a secret: a feed's Redis password, an API key.
SECRET_KEYS = ("password", "secret", "token", "auth", "api_key")


def masked(config: Mapping[str, Any]) -> dict[str, Any]:
    """*config* with the values of secret-looking keys (a feed's Redis password, an API key) replaced by ``***``."""
    return {k: "***" if any(s in str(k).lower() for s in SECRET_KEYS) and v else v for k, v in config.items()}
