"""mmframe's exceptions."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager


class MMFrameError(Exception):
    """Base class of every error mmframe raises on purpose."""


class ConfigError(MMFrameError, ValueError):
    """A configuration value is missing, unknown, of the wrong type or out of range. The message names the key."""

    def __init__(self, message: str, *, errors: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.errors = list(errors) or [message]


class PluginError(MMFrameError):
    """A plugin is broken: a duplicate name, a bad registration, a misspelt hook."""


class InvalidTransition(MMFrameError):
    """An order event asks for a state change the order state machine does not allow.

    This is never silently ignored: it means the sink and the tracker disagree about an order, and the market
    stops rather than quote on a book it does not understand.
    """


class UnknownPlugin(MMFrameError, LookupError):
    """A strategy, feed or sink name that no installed plugin registers."""


@contextmanager
def unwrapped() -> Iterator[None]:
    """Raise the one exception a trio nursery wrapped in an exception group as itself (an assertion of a test's,
    a backtest's error), so that whoever catches it by type sees it; a group of several is raised as it is."""
    try:
        yield
    except BaseExceptionGroup as group:
        inner: BaseException = group
        while isinstance(inner, BaseExceptionGroup) and len(inner.exceptions) == 1:
            inner = inner.exceptions[0]
        if inner is group:
            raise
        raise inner from None
