"""The dashboard's server side against a live ``mmframe serve --demo``: the page and its headers, the markets, one
market's view, the live stream."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .dashboard_rig import DemoServer, demo_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    with demo_server(tmp_path_factory.mktemp("dashboard")) as live:
        yield live


def test_the_page_and_its_files_are_served_with_a_strict_policy(server: DemoServer) -> None:
    page = server.client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "default-src 'none'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "<script" in page.text and 'src="/dashboard/app.js"' in page.text
    for name in ("app.js", "app.css"):
        asset = server.client.get(f"/dashboard/{name}")
        assert asset.status_code == 200 and asset.headers["content-security-policy"] == policy
    assert server.client.get("/dashboard/../app.py").status_code == 404
    assert server.client.get("/dashboard/index.py").status_code == 404


def test_every_market_has_a_row_with_its_figures(server: DemoServer) -> None:
    server.wait(lambda: all(row["bid"] is not None for row in server.rows().values()))
    rows = server.rows()
    assert set(rows) == {"BTC/USDT", "ETH/USDT"}
    btc = rows["BTC/USDT"]
    assert btc["state"] == "running" and btc["strategy"] == "external_index_follow"
    assert float(btc["bid"]) < float(btc["index_price"]) < float(btc["ask"])
    assert float(btc["spread"]) == pytest.approx(float(btc["ask"]) - float(btc["bid"]))
    assert btc["sink"] == "ok" and btc["owner"] is None and btc["feed_age"] is not None
    data = server.get("/api/v1/dashboard/markets")
    assert data["cluster"] is None and data["time"] > 0


def test_one_market_shows_its_ladder_book_history_and_config(server: DemoServer) -> None:
    btc = server.rows()["BTC/USDT"]
    server.wait(lambda: len(server.get("/api/v1/dashboard/market", id=btc["id"])["history"]["t"]) >= 2)
    view = server.get("/api/v1/dashboard/market", id=btc["id"])
    assert view["row"]["id"] == btc["id"]
    bids, asks = view["ladder"]["bids"], view["ladder"]["asks"]
    assert bids and asks and float(bids[0][0]) < float(asks[0][0])
    assert [float(p) for p, _ in bids] == sorted((float(p) for p, _ in bids), reverse=True)
    assert view["book"]["bids"]  # the paper book: ours and the simulated takers' side
    history = view["history"]
    assert len(history["t"]) == len(history["pnl"]) == len(history["inventory"]) == len(history["index"])
    assert view["config"]["depth_levels"]  # the seed's ladder
    assert isinstance(view["strategy_status"], dict)
    event = view["events"][0]  # the demo's ladder moves all the time: newest first
    assert set(event) == {"t", "kind", "client_order_id", "side", "price", "quantity", "reason"}
    assert event["side"] in ("buy", "sell") and event["client_order_id"].startswith("mmf-BTCUSDT1")
    assert all(set(fill) == {"t", "side", "price", "quantity", "fee", "liquidity"} for fill in view["fills"])
    missing = server.client.get("/api/v1/dashboard/market", params={"id": "nope"})
    assert missing.status_code == 404 and "no market" in missing.json()["message"]


def test_the_stream_sends_a_snapshot_then_deltas_of_what_changed(server: DemoServer) -> None:
    events: list[tuple[str, dict[str, object]]] = []
    with httpx.stream("GET", f"{server.url}/api/v1/dashboard/stream", timeout=10) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        kind = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                events.append((kind, json.loads(line[6:])))
                if len(events) == 3:
                    break
    (first, snapshot), *deltas = events
    assert first == "snapshot" and {row["symbol"] for row in snapshot["markets"]} == {"BTC/USDT", "ETH/USDT"}
    assert [kind for kind, _ in deltas] == ["delta", "delta"]
    assert all(set(delta) == {"changed", "removed", "time"} for _, delta in deltas)
    assert any(delta["changed"] for _, delta in deltas)  # the demo's markets move every second
    for _, delta in deltas:  # a changed row is its id and what changed: never the fields that stay the same
        for part in delta["changed"]:  # type: ignore[attr-defined]
            assert "id" in part and "strategy" not in part and "symbol" not in part and len(part) > 1


def test_the_package_ships_the_page(tmp_path: Path) -> None:
    from importlib import resources

    folder = resources.files("mmframe._control").joinpath("dashboard")
    assert {"index.html", "app.js", "app.css"} <= {entry.name for entry in folder.iterdir()}
    pyproject = (Path(__file__).parent.parent / "pyproject.toml").read_text()
    assert '"_control/dashboard/*"' in pyproject  # in the wheel's package data


def test_history_is_compact_and_bounded_and_status_values_stay_json() -> None:
    import math

    from mmframe._control.dashboard import HISTORY, History, _jsonable

    history = History()
    for n in range(HISTORY * 2):
        history.add(1_700_000_000.0 + n, math.nan if n % 2 else 100.0 + n, float(n), -1.0)
    columns = history.columns()
    assert len(columns["t"]) == HISTORY and columns["t"][-1] == 1_700_000_000.0 + HISTORY * 2 - 1
    assert columns["index"][-1] is None and columns["index"][-2] == pytest.approx(100.0 + HISTORY * 2 - 2)
    assert len(history) <= HISTORY + HISTORY // 4
    status = {"sigma": math.nan, "h": math.inf, "nested": [math.nan, 1.5, {"x": -math.inf}], "ok": True}
    assert _jsonable(status) == {"sigma": None, "h": None, "nested": [None, 1.5, {"x": None}], "ok": True}
    json.dumps(_jsonable(status), allow_nan=False)  # a browser can parse it
