"""The service and its control API side by side: what ``mmframe serve`` runs."""

from __future__ import annotations

import trio

from .._errors import ConfigError
from .._service.service import Service
from .._settings import Settings
from .app import serve_api

__all__ = ["check_exposure", "serve"]


def check_exposure(settings: Settings) -> None:
    """Refuse to serve the control API beyond the loopback interface without a token."""
    if not settings.api_is_loopback and not settings.api_token:
        raise ConfigError(
            f"refusing to serve the control API on {settings.api_host} without MMFRAME_API_TOKEN: "
            "set a token or bind to 127.0.0.1"
        )


async def serve(service: Service, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
    """Run *service* (its markets started) and then its control API; reports the API's bound addresses. Returns
    once :meth:`Service.aclose` has stopped the service (the API stops with it), or when cancelled.

    An API beyond the loopback interface without a token is refused (:func:`check_exposure`) before anything
    starts.
    """
    check_exposure(service.settings)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        if service.manager.stopping:  # told to stop while the markets were starting: no API to open now
            task_status.started([])
            return
        binds = await nursery.start(serve_api, service)
        task_status.started(binds)
