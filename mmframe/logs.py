"""Logging set-up shared by ``mmframe``'s commands and by plugins that add commands of their own.

Public: a plugin's command (``mmframe match-engine serve``, say) calls :func:`setup_logging` so that its lines look
like the service's.
"""

from __future__ import annotations

import logging

__all__ = ["LOG_FORMAT", "setup_logging"]

#: One line per record: time, level, logger name, message.
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: str, log_file: str | None = None) -> None:
    """Send records at *level* (``"INFO"``, ``"debug"``, …) and above to stderr, and to *log_file* when given.

    Replaces any handlers configured earlier. Below ``DEBUG``, httpx's one line per request is silenced.
    """
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_file:
        handlers.append(logging.FileHandler(log_file))
    logging.basicConfig(
        level=level.upper(),
        format=LOG_FORMAT,
        datefmt="%Y-%m-%d %H:%M:%S",
        handlers=handlers,
        force=True,
    )
    if level.upper() != "DEBUG":
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is debugging, not operations
