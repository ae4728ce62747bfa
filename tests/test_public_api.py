"""The public surface: what ``import mmframe`` exports, and that it stays free of asyncio."""

from __future__ import annotations

import ast
from pathlib import Path

import mmframe

ROOT = Path(__file__).parent.parent


def test_exported_names() -> None:
    assert sorted(mmframe.__all__) == sorted(
        [
            "AmendRequest",
            "ConfigError",
            "DepthSnapshot",
            "ExchangeFeed",
            "Fill",
            "InvalidTransition",
            "Liquidity",
            "MMFrameError",
            "Market",
            "MarketData",
            "MarketHalted",
            "MarketKey",
            "MarketSpec",
            "MarketState",
            "MarketStatus",
            "MarketType",
            "Order",
            "OrderEvent",
            "OrderEventKind",
            "OrderRequest",
            "OrderSink",
            "OrderStatus",
            "OrderType",
            "PluginError",
            "Position",
            "PriceTick",
            "Quote",
            "RestartPolicy",
            "RiskContext",
            "RiskLimits",
            "Side",
            "Strategy",
            "StrategyContext",
            "Subscription",
            "Trade",
            "UnknownPlugin",
            "__version__",
            "hookimpl",
            "structure_config",
            "to_decimal",
        ]
    )
    for name in mmframe.__all__:
        assert hasattr(mmframe, name), name


def test_package_ships_py_typed() -> None:
    assert (ROOT / "mmframe" / "py.typed").exists()


def test_no_asyncio_in_mmframe_code() -> None:
    offenders = []
    for path in [
        *ROOT.glob("mmframe/**/*.py"),
        *ROOT.glob("plugins/*/mmframe_*/**/*.py"),
        *ROOT.glob("examples/*/mmframe_*/**/*.py"),
    ]:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n == "asyncio" or n.startswith("asyncio.") for n in names):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
