"""What the control API answers, as JSON-able data: the seed's shapes for the markets, their metrics and status."""

from __future__ import annotations

import math
from typing import Any

from .. import _convert
from .._engine.spec import MarketStatus
from .._service.service import MarketRecord, Service

__all__ = [
    "command_result",
    "error_of",
    "health",
    "metrics_of",
    "strategy_id",
    "strategy_list",
    "strategy_rows",
    "strategy_status",
]


def metrics_of(status: MarketStatus | None) -> dict[str, Any]:
    """The seed's per-strategy metrics (plus mmframe's), decimals as strings."""
    if status is None:
        return {
            "total_orders": 0,
            "success_orders": 0,
            "failed_orders": 0,
            "total_trades": 0,
            "total_volume": "0",
            "active_orders": 0,
            "uptime_seconds": 0,
        }
    return {
        "total_orders": status.orders_placed + status.orders_vetoed,
        "success_orders": status.orders_placed - status.orders_rejected,
        "failed_orders": status.orders_rejected + status.orders_vetoed,
        "total_trades": status.fills,
        "total_volume": str(status.volume),
        "active_orders": status.active_orders,
        "uptime_seconds": math.floor(status.uptime_seconds),
        "orders_cancelled": status.orders_cancelled,
        "orders_amended": status.orders_amended,
        "orders_vetoed": status.orders_vetoed,
        "messages_held": status.messages_held,
        "behind_seconds": round(status.behind_seconds, 3),
        "bids": status.bids,
        "asks": status.asks,
        "position": str(status.position),
        "pnl": str(status.pnl),
        "stale": status.stale,
        "ticks": status.ticks,
        "ticks_rejected": status.ticks_rejected,
        "ticks_rejected_by_reason": dict(status.ticks_rejected_by_reason),
    }


def strategy_id(record: MarketRecord) -> str:
    """The seed's strategy id: ``external_index_follow_BTC/USDT_1``."""
    return f"{record.row.strategy_name}_{record.symbol}_{record.row.market_type}"


def error_of(record: MarketRecord, status: MarketStatus | None) -> str:
    """Why the market could not be loaded, else why it stopped (``""`` when nothing is wrong)."""
    if record.error:
        return record.error
    return status.error if status is not None else ""


def health(service: Service) -> dict[str, Any]:
    """``/api/v1/health``: the seed's shape, with the markets counted by state and the audit trail's figures."""
    states = [service.state_of(r) for r in service.records.values()]
    running = states.count("running") + states.count("degraded")
    starting = states.count("starting")
    return {
        "status": "healthy",
        "service": "market-maker",
        "strategies": {
            "total": len(states),
            "running": running,
            "starting": starting,
            "stopped": len(states) - running - starting,
            "degraded": states.count("degraded"),
        },
        "uptime_seconds": int(service.uptime()),
        "audit": service.audit.status(),
    }


def strategy_rows(service: Service) -> list[dict[str, Any]]:
    """``/api/v1/strategies``: one row per configured market, in the seed's plain shape."""
    out = []
    for record in service.records.values():
        status = service.status_of(record)
        metrics = metrics_of(status)
        out.append(
            {
                "id": record.id,
                "currency_id": record.row.currency_id,
                "symbol": record.symbol,
                "index_symbol": record.row.index_symbol,
                "market_type": record.row.market_type,
                "strategy_name": record.row.strategy_name,
                "is_running": service.state_of(record) in ("running", "degraded"),
                "status": service.state_of(record),
                "metrics": {"total_orders": metrics["total_orders"], "total_volume": metrics["total_volume"]},
                "error": error_of(record, status),
                **_owner(service, record),
            }
        )
    return out


def strategy_list(service: Service) -> list[dict[str, Any]]:
    """``/api/v1/strategy/list``: each market's id, symbol, type, strategy and state."""
    return [
        {
            "id": r.id,
            "symbol": r.symbol,
            "market_type": r.row.market_type,
            "strategy_name": r.row.strategy_name,
            "status": service.state_of(r),
            **_owner(service, r),
        }
        for r in service.records.values()
    ]


def _owner(service: Service, record: MarketRecord) -> dict[str, Any]:
    """In a cluster, ``{"owner": member}``: which instance runs the market (``None``: none yet). Outside one,
    nothing (the seed's shapes stay as they were)."""
    return {"owner": service.owner_of(record)} if service.cluster is not None else {}


def strategy_status(service: Service, record: MarketRecord) -> dict[str, Any]:
    """``/api/v1/strategy/status``: one market in full."""
    status = service.status_of(record)
    return {
        "strategy_id": strategy_id(record),
        "id": record.id,
        "strategy_name": record.row.strategy_name,
        "symbol": record.symbol,
        "market_type": record.row.market_type,
        "status": service.state_of(record),
        "current_price": None if status is None or status.index_price is None else str(status.index_price),
        "metrics": metrics_of(status),
        # what the market runs with (an update applies on reload)
        "config": dict(record.spec.strategy_config) if record.spec is not None else record.row.effective_config,
        "error": error_of(record, status),
        # through the converter: a Decimal in a strategy's status becomes an exact string, not an error
        "strategy_status": _convert.unstructure(dict(status.strategy_status)) if status is not None else {},
        # what the feed reports for the market's index symbol (null for a feed that reports nothing)
        "feed": _convert.unstructure(status.feed) if status is not None and status.feed is not None else None,
        **_owner(service, record),
    }


def command_result(record: MarketRecord, state: str) -> dict[str, Any]:
    """What a start, stop or reload answers."""
    return {"strategy_id": strategy_id(record), "id": record.id, "status": state}
