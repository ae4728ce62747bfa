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


async def serve(
    service: Service,
    *,
    wait_for_markets: bool = True,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run *service* and its control API; reports the API's bound addresses. Returns once
    :meth:`Service.aclose` has stopped the service (the API stops with it), or when cancelled.

    The API is bound as soon as the service has loaded its markets and its engine runs, before the markets have
    started: it answers from the first moment, showing the markets not started yet as ``starting``. The bound
    addresses are reported once start-up is over (:attr:`Service.started_up`), or at once with
    ``wait_for_markets=False``.

    An API beyond the loopback interface without a token is refused (:func:`check_exposure`) before anything
    starts.
    """
    check_exposure(service.settings)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        if service.manager.stopping:  # told to stop while the service was loading: no API to open now
            task_status.started([])
            return
        binds = await nursery.start(serve_api, service)
        service.api_binds = list(binds)
        if wait_for_markets:
            await service.started_up.wait()
        task_status.started(binds)
