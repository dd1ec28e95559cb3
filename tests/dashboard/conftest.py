"""Fixtures of the dashboard tests: a real data dir built through the write path and the
detectors, the dashboard served on loopback, and headless Chromium driven by Playwright."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dashboard import storegen

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "screenshots"
README_SHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = os.environ.get("TOOLTRAIL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
USER, PASSWORD = "analyst", "correct-horse-battery-staple"


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> storegen.Built:
    return storegen.build(tmp_path_factory.mktemp("dash-data"))


@pytest.fixture(scope="session")
def dash_server(built: storegen.Built) -> Iterator[dict]:
    from dashboard.app import create_app, start_background, users_store

    users_store(built.config).add(USER, PASSWORD)
    app = create_app(built.config)
    srv, url = start_background(app)
    yield {"url": url, "app": app, "config": built.config, "built": built}
    srv.shutdown()


@pytest.fixture(scope="module")  # module: Playwright's sync API holds an event loop in this thread while open
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture()
def page(browser) -> Iterator[object]:
    ctx = browser.new_context(viewport={"width": 1440, "height": 900}, accept_downloads=True)
    pg = ctx.new_page()
    pg.set_default_timeout(20_000)
    pg.tt_console = []  # type: ignore[attr-defined]
    pg.on("console", lambda m: pg.tt_console.append(f"{m.type}: {m.text}"))  # type: ignore[attr-defined]
    pg.on("pageerror", lambda e: pg.tt_console.append(f"pageerror: {e}"))  # type: ignore[attr-defined]
    yield pg
    ctx.close()


def screenshot(pg, name: str, *, full_page: bool = True) -> Path:
    """Save a screenshot as a test artifact; with TOOLTRAIL_README_SCREENSHOTS=1 also refresh
    the README's copy in docs/screenshots/."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    if full_page:
        pg.mouse.wheel(0, -100_000)  # back to the top: the navigation bar is sticky
        pg.wait_for_timeout(300)
    pg.screenshot(path=str(path), full_page=full_page)
    if os.environ.get("TOOLTRAIL_README_SCREENSHOTS") == "1":
        README_SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, README_SHOTS / f"{name}.png")
    return path


def login(pg, base: str, user: str = USER, password: str = PASSWORD, path: str = "/") -> None:
    pg.goto(base + path)
    pg.wait_for_selector("#login-submit")
    pg.fill("#username", user)
    pg.fill("#password", password)
    pg.click("#login-submit")
