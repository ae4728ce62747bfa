"""The dashboard in a real browser: Playwright driving Debian's chromium (``executable_path``: no browser download),
headless, against a live ``mmframe serve --demo``. Without chromium or Playwright these tests are skipped, unless
MMFRAME_REQUIRE_SERVICES=1 (CI, whose ``.ci/run`` installs chromium with apt), where they fail."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .dashboard_rig import HOSTILE, TOKEN, DemoServer, demo_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _require_browser() -> None:
    missing = []
    if CHROMIUM is None:
        missing.append("chromium (apt install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright (pip install playwright)")
    if missing:
        why = "the browser tests need " + " and ".join(missing)
        if os.environ.get("MMFRAME_REQUIRE_SERVICES") == "1":
            pytest.fail(why + " (MMFRAME_REQUIRE_SERVICES=1)")
        pytest.skip(why)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    _require_browser()
    with demo_server(tmp_path_factory.mktemp("browser")) as live:
        yield live


@pytest.fixture
def page(browser: Any, server: DemoServer) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server.url + "/")
    try:
        yield page
    finally:
        context.close()
    assert errors == [], errors  # no script error on the page


def row(page: Any, symbol: str) -> Any:
    return page.locator("[data-testid=market-row]", has_text=symbol)


def save_token(page: Any, token: str) -> None:
    page.get_by_test_id("token-input").fill(token)
    page.get_by_test_id("token-save").click()


def open_market(page: Any, symbol: str) -> None:
    row(page, symbol).click()
    page.get_by_test_id("market-title").filter(has_text=symbol).wait_for()


def test_the_page_shows_both_demo_markets_and_their_figures_change(page: Any) -> None:
    rows = page.get_by_test_id("market-row")
    rows.first.wait_for()
    page.wait_for_function("document.querySelectorAll('[data-testid=market-row]').length === 2")
    texts = rows.all_inner_texts()
    assert any("BTC/USDT" in t for t in texts) and any("ETH/USDT" in t for t in texts)
    btc = row(page, "BTC/USDT")
    btc.locator(".index").filter(has_text=".").wait_for()
    before = btc.inner_text()
    deadline = time.monotonic() + 3.0
    while btc.inner_text() == before:
        assert time.monotonic() < deadline, f"no figure of BTC/USDT changed within 3 s: {before!r}"
        page.wait_for_timeout(100)


def test_stopping_a_market_from_the_page_stops_it_and_leaves_no_order(page: Any, server: DemoServer) -> None:
    save_token(page, TOKEN)
    open_market(page, "BTC/USDT")
    page.get_by_test_id("btn-stop").click()
    server.wait(lambda: server.rows()["BTC/USDT"]["state"] == "stopped", timeout=10)
    page.get_by_test_id("market-title").filter(has_text="stopped").wait_for()
    btc = server.rows()["BTC/USDT"]
    view = server.get("/api/v1/dashboard/market", id=btc["id"])
    assert view["ladder"] == {"bids": [], "asks": []}
    status = server.get("/api/v1/strategy/status", symbol="BTC/USDT")
    assert status["metrics"]["active_orders"] == 0
    # the paper book itself holds nothing now: the simulated takers' orders never rest, ours were all cancelled
    assert view["book"] == {"bids": [], "asks": []}
    assert server.post("/api/v1/strategy/start", {"symbol": "BTC/USDT"}).status_code == 200  # as it was


def test_an_invalid_config_value_shows_the_server_message_and_changes_nothing(page: Any, server: DemoServer) -> None:
    save_token(page, TOKEN)
    btc = server.rows()["BTC/USDT"]
    before = server.get("/api/v1/dashboard/market", id=btc["id"])["config"]
    open_market(page, "BTC/USDT")
    editor = page.get_by_test_id("config-editor")
    field = editor.locator(".cfg-input[data-key=base_quantity]")
    field.fill("-1")
    page.get_by_test_id("config-save").click()
    error = editor.locator(".field-error", has_text="base_quantity")
    error.wait_for()
    assert "base_quantity" in error.inner_text()
    assert server.get("/api/v1/dashboard/market", id=btc["id"])["config"] == before


def test_a_wrong_token_is_refused_and_the_page_says_so(page: Any, server: DemoServer) -> None:
    save_token(page, "not-the-token")
    open_market(page, "ETH/USDT")
    page.get_by_test_id("btn-stop").click()
    page.get_by_test_id("message").filter(has_text="refused").wait_for()
    assert server.rows()["ETH/USDT"]["state"] == "running"


def test_a_hostile_symbol_renders_as_text_and_runs_nothing(browser: Any, tmp_path: Path) -> None:
    with demo_server(tmp_path, hostile=True) as hostile:
        context = browser.new_context()
        page = context.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.goto(hostile.url + "/")
        page.get_by_test_id("market-row").filter(has_text=HOSTILE).wait_for(timeout=10_000)
        assert page.locator("img[src=x]").count() == 0
        open_market(page, HOSTILE)
        page.wait_for_timeout(500)
        assert page.locator("img[src=x]").count() == 0
        assert dialogs == []
        context.close()


def test_the_buttons_act_on_the_market_shown_even_when_another_shares_its_symbol(browser: Any,
                                                                                 tmp_path: Path) -> None:
    """A market that failed to load shows its index's symbol, BTC/USDT's: its Stop must not stop BTC/USDT."""
    with demo_server(tmp_path, clash=True) as clashing:
        context = browser.new_context()
        page = context.new_page()
        page.goto(clashing.url + "/#market=9003_1")
        save_token(page, TOKEN)
        page.get_by_test_id("market-title").filter(has_text="failed").wait_for()
        page.get_by_test_id("btn-stop").click()
        page.get_by_test_id("message").filter(has_text="stop").wait_for()
        page.wait_for_timeout(500)
        states = {row["id"]: row["state"] for row in clashing.get("/api/v1/dashboard/markets")["markets"]}
        assert states["9001_1"] == "running" and states["9003_1"] == "failed"
        context.close()


def test_screenshots_for_the_docs(page: Any, server: DemoServer) -> None:
    """Writes docs/dashboard-markets.png and docs/dashboard-market.png when MMFRAME_DASHBOARD_SCREENSHOTS is set
    (how the README's pictures were made); otherwise only checks that both views render."""
    target = os.environ.get("MMFRAME_DASHBOARD_SCREENSHOTS")
    page.get_by_test_id("market-row").first.wait_for()
    page.wait_for_timeout(1500)
    if target:
        page.screenshot(path=str(Path(target) / "dashboard-markets.png"), full_page=True)
    open_market(page, "BTC/USDT")
    page.wait_for_timeout(2500)
    if target:
        page.screenshot(path=str(Path(target) / "dashboard-market.png"), full_page=True)
    assert page.get_by_test_id("config-editor").is_visible()
