"""The control API: the seed's endpoints and shapes, on hypercorn's trio worker, routed by Starlette.

Responses are ``{"code": 0, "message": ..., "data": ...}`` (the seed's shape; ``/health``, ``/api/v1/health`` and
``/api/v1/strategies`` keep the seed's own plain shapes). Every error is a 4xx (or, for a bug, a 500) with
``{"code": <the HTTP status>, "message": "<what is wrong>"}``. Every POST needs ``Authorization: Bearer <token>``;
with no token configured, they are refused. Bodies are UTF-8 JSON objects of at most ``max_body_bytes``, nested
at most :data:`MAX_JSON_DEPTH` deep (checked before parsing). A reply renders whatever text a client sent
(a lone surrogate comes back as a ``\\udXXX`` escape).
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import _convert
from .._errors import ConfigError, MMFrameError, UnknownPlugin
from .._models import MarketType
from .._plugins import get_routes, list_plugins
from .._service.cluster import ClusterUnavailable
from .._service.service import MarketRecord, ReloadRefused, Service, UnknownMarket
from . import shapes
from .dashboard import Dashboard, dashboard_routes
from .metrics import make_registry, render_metrics

__all__ = ["MAX_JSON_DEPTH", "ApiError", "ApiResponse", "create_app", "json_too_deep", "serve_api"]

log = logging.getLogger("mmframe.api")

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})

#: The deepest nesting of arrays and objects a request body may have (the deepest valid one has 4 levels).
MAX_JSON_DEPTH = 32


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


class ApiResponse(JSONResponse):
    """A JSON response that renders any text: one that UTF-8 cannot encode (a lone surrogate a client sent as a
    ``\\ud800`` escape) is written as a JSON ``\\u`` escape instead of failing."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def ok(data: Any = None, message: str = "Success") -> JSONResponse:
    return ApiResponse({"code": 0, "message": message, "data": data})


def fail(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return ApiResponse({"code": status, "message": message}, status_code=status, headers=headers)


def shown(value: Any, limit: int = 80) -> str:
    """A client's value for a message: its ``repr`` (surrogates and control characters escaped), shortened."""
    text = repr(value) if isinstance(value, str) else _short_repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _short_repr(value: Any) -> str:
    if isinstance(value, dict | list):
        return f"a JSON {'object' if isinstance(value, dict) else 'array'} of {len(value)}"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**40:
        return "a very long integer"
    return repr(value)


# ---- request handling ------------------------------------------------------------------------------------------


def _service(request: Request) -> Service:
    return request.app.state.service  # type: ignore[no-any-return]


def check_token(request: Request) -> None:
    """Refuse a mutating request without the configured bearer token (compared in constant time)."""
    token = _service(request).settings.api_token
    if not token:
        raise ApiError(403, "mutating endpoints are disabled: no MMFRAME_API_TOKEN is configured")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise ApiError(401, "missing or wrong bearer token", {"WWW-Authenticate": 'Bearer realm="mmframe"'})


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"?', re.S)  # a JSON string (or an unterminated one, to the end)
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")
_DIGITS = re.compile(r"[0-9]{1,18}")


def json_too_deep(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether *text* nests arrays and objects deeper than *limit* (brackets inside strings do not count): checked
    before parsing, so a hostile document never reaches the parser's recursion."""
    depth = 0
    for bracket in _NOT_BRACKETS.sub("", _STRINGS.sub("", text)):
        if bracket in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


async def read_json(request: Request) -> dict[str, Any]:
    """The request's JSON object, read with a size cap, a depth cap, and UTF-8 only."""
    limit = _service(request).settings.max_body_bytes
    content_type = request.headers.get("content-type", "")
    if content_type and "json" not in content_type.lower():
        raise ApiError(415, f"the body must be application/json, got {shown(content_type)}")
    declared = request.headers.get("content-length")
    if declared is not None and (not _DIGITS.fullmatch(declared) or int(declared) > limit):
        raise ApiError(413, f"the body must be at most {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, f"the body must be at most {limit} bytes")
    if not body:
        raise ApiError(400, "the body must be a JSON object")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"the body must be UTF-8 JSON: {exc.reason} at byte {exc.start}") from None
    if json_too_deep(text):
        raise ApiError(400, f"the body nests arrays and objects more than {MAX_JSON_DEPTH} deep")
    try:
        data = json.loads(text, parse_float=str, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, f"malformed JSON: {shown(str(exc), 200)[1:-1]}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object")
    where = _not_unicode(data, "")
    if where is not None:
        # A lone surrogate ("\\ud800") is valid JSON but not text: no database, log or exchange can take it.
        raise ApiError(400, f"{where or 'the body'} is not valid Unicode text (a lone surrogate)")
    return data


def _not_unicode(value: Any, path: str) -> str | None:
    """The path of the first key or string in *value* that UTF-8 cannot encode, or ``None``."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            inner = f"{path}.{key}" if path else str(key)
            if _not_unicode(key, "") is not None:
                return f"a key in {path or 'the body'}"
            found = _not_unicode(item, inner)
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _not_unicode(item, f"{path}[{i}]")
            if found is not None:
                return found
    return None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _market_type(value: Any) -> int:
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, f"market_type must be an integer (1 spot, 2 margin), got {shown(value)}")
    if value not in {t.value for t in MarketType}:
        raise ApiError(400, f"market_type must be 1 (spot) or 2 (margin), got {shown(value)}")
    return value


def _symbol(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 50:
        raise ApiError(400, "symbol must be a non-empty string like BTC/USDT or BTCUSDT")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(400, f"symbol must be valid Unicode text, got {shown(value)}") from None
    return value.strip()


def find_market(request: Request, data: dict[str, Any], allowed: set[str]) -> MarketRecord:
    unknown = sorted(set(data) - allowed)
    if unknown:
        names = ", ".join(
            name if re.fullmatch(r"[\w.-]{1,40}", name, re.ASCII) else shown(name, 40) for name in unknown[:5]
        ) + (" ..." if len(unknown) > 5 else "")
        raise ApiError(400, f"unknown field(s): {names} (allowed: {', '.join(sorted(allowed))})")
    if "symbol" not in data:
        raise ApiError(400, "symbol is required")
    return _service(request).find(_symbol(data["symbol"]), _market_type(data.get("market_type", 1)))


# ---- endpoints -------------------------------------------------------------------------------------------------


async def health(request: Request) -> Response:
    return ApiResponse({"status": "healthy", "service": "market-maker"})


async def api_health(request: Request) -> Response:
    return ApiResponse(shapes.health(_service(request)))


async def strategies(request: Request) -> Response:
    return ApiResponse(shapes.strategy_rows(_service(request)))


async def strategy_list(request: Request) -> Response:
    return ok(shapes.strategy_list(_service(request)))


async def strategy_status(request: Request) -> Response:
    params = dict(request.query_params)
    record = find_market(request, params, {"symbol", "market_type"})
    return ok(shapes.strategy_status(_service(request), record))


def _command(action: str, message: str) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        check_token(request)
        record = find_market(request, await read_json(request), {"symbol", "market_type"})
        service = _service(request)
        if action == "start":
            status = await service.start(record)
        elif action == "stop":
            await service.stop(record)
            status = service.status_of(record)
        else:
            record, status = await service.reload(record)
        state = str(status.state) if status is not None else "stopped"
        if action != "stop" and state not in ("running", "degraded"):
            error = (status.error if status is not None else "") or record.error or f"the market is {state}"
            if record.spec is not None and service.manager.is_active(record.spec.key):
                error += " (it is being restarted)"
            raise ApiError(422, f"strategy {record.id} did not start: {error}")
        log.info("control: %s %s -> %s", action, record.id, state)
        return ok(shapes.command_result(record, state), message)

    endpoint.__name__ = f"strategy_{action}"
    return endpoint


async def config_update(request: Request) -> Response:
    check_token(request)
    data = await read_json(request)
    changes = data.pop("config", None)
    record = find_market(request, data, {"symbol", "market_type"})
    if not isinstance(changes, dict) or not changes:
        raise ApiError(400, "config must be a non-empty JSON object of the keys to change")
    effective = await _service(request).update_config(record, changes)
    log.info("control: config of %s updated (%s); applies on reload", record.id, ", ".join(sorted(changes)))
    return ok({"id": record.id, "config": effective}, "Config updated; reload the strategy to apply it")


async def kill(request: Request) -> Response:
    check_token(request)
    result = await _service(request).kill()
    if result["unconfirmed"].get("cluster"):
        # This instance's markets stopped; the cluster could not be told: the others' markets go on until their
        # leases end (they cannot renew without Redis either). Not a success: repeat it once Redis answers.
        message = ("Kill switch: this instance's markets stopped, but the cluster's Redis cannot be reached: the "
                   "other instances were not told (their markets stop when their leases end); repeat the kill "
                   "once Redis answers")
        return ApiResponse({"code": 503, "message": message, "data": result}, status_code=503)
    return ok(result, "Kill switch: every market stopped and our orders cancelled")


async def cluster(request: Request) -> Response:
    service = _service(request)
    if service.cluster is None:
        return ok({"cluster": None, "message": "no cluster configured: this process runs every market"})
    data = service.cluster.describe()
    data["markets"] = [
        {"id": r.id, "symbol": r.symbol, "market_type": r.row.market_type, "owner": service.owner_of(r),
         "status": service.state_of(r)}
        for r in service.records.values()
    ]
    return ok(data)


async def plugins(request: Request) -> Response:
    return ok(_convert.unstructure(list_plugins(_service(request).pm)))


async def metrics(request: Request) -> Response:
    body, content_type = render_metrics(request.app.state.metrics)
    return Response(body, media_type=content_type)


# ---- the app ---------------------------------------------------------------------------------------------------


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return fail(exc.status, exc.message, exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = {404: f"no endpoint {request.url.path}", 405: f"{request.method} is not allowed on {request.url.path}"}
    return fail(exc.status_code, message.get(exc.status_code, str(exc.detail)), dict(exc.headers or {}) or None)


async def _known_error(request: Request, exc: Exception) -> Response:
    message = str(exc) or type(exc).__name__
    if isinstance(exc, UnknownMarket | UnknownPlugin):
        return fail(404, message)
    if isinstance(exc, ConfigError):
        return fail(400, message)
    if isinstance(exc, ReloadRefused):
        return fail(422, message)
    if isinstance(exc, ClusterUnavailable):
        return fail(503, message)
    return fail(409, message)


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("control API: %s %s failed", request.method, request.url.path)
    return fail(500, "internal error (logged)")


def _guarded(endpoint: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """A plugin's mutating route: the bearer token is checked before the plugin sees the request."""

    async def guarded(request: Request) -> Response:
        check_token(request)
        return await endpoint(request)

    return guarded


def create_app(service: Service) -> Starlette:
    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/api/v1/health", api_health, methods=["GET"]),
        Route("/api/v1/strategies", strategies, methods=["GET"]),
        Route("/api/v1/strategy/list", strategy_list, methods=["GET"]),
        Route("/api/v1/strategy/status", strategy_status, methods=["GET"]),
        Route("/api/v1/strategy/start", _command("start", "Strategy started successfully"), methods=["POST"]),
        Route("/api/v1/strategy/stop", _command("stop", "Strategy stopped successfully"), methods=["POST"]),
        Route("/api/v1/strategy/reload", _command("reload", "Strategy reloaded successfully"), methods=["POST"]),
        Route("/api/v1/strategy/config/update", config_update, methods=["POST"]),
        Route("/api/v1/kill", kill, methods=["POST"]),
        Route("/api/v1/cluster", cluster, methods=["GET"]),
        Route("/api/v1/plugins", plugins, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        *dashboard_routes(),
    ]
    taken = {(r.path, m) for r in routes for m in (r.methods or ())}
    for route in get_routes(service.pm):
        clash = [m for m in route.methods if (route.path, m) in taken]
        if clash:
            raise MMFrameError(f"plugin {route.plugin!r} route {clash[0]} {route.path} clashes with a built-in route")
        endpoint = _guarded(route.endpoint) if MUTATING & set(route.methods) else route.endpoint
        routes.append(Route(route.path, endpoint, methods=list(route.methods)))
    app = Starlette(
        routes=routes,
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            MMFrameError: _known_error,
            Exception: _server_error,
        },
    )
    app.state.service = service
    app.state.metrics = make_registry(service)
    app.state.dashboard = Dashboard(service)
    return app


async def serve_api(service: Service, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve the control API of *service* until the service is closed (:meth:`Service.aclose`) or this is
    cancelled; reports the bound addresses (port 0 picks a free port)."""
    settings = service.settings
    config = HypercornConfig()
    host = f"[{settings.api_host}]" if ":" in settings.api_host else settings.api_host
    config.bind = [f"{host}:{settings.api_port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("mmframe.api.server")  # type: ignore[assignment]
    config.graceful_timeout = 1.0

    app = create_app(service)
    dashboard: Dashboard = app.state.dashboard
    service.pm.register(dashboard, name="mmframe.dashboard")  # the recent order events and fills it shows

    async with trio.open_nursery() as nursery:
        nursery.start_soon(dashboard.run)
        binds = await nursery.start(serve, app, config)
        for bind in binds:
            log.info("HTTP API server listening on %s", bind.split("://", 1)[-1])
        task_status.started(binds)
        await service.closed.wait()
        nursery.cancel_scope.cancel()
    if service.pm.is_registered(dashboard):
        service.pm.unregister(dashboard)
