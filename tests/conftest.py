"""Fixtures for cross-app tests that drive the running application: a live ASGI server and
Debian's Chromium through Playwright."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from tests.support.live_server import LiveServer

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture
def asgi_server(transactional_db: Any) -> Iterator[LiveServer]:
    """cs_platform.asgi.application (pages, static files, websockets) on a free port.
    `transactional_db` comes first so the server stops before the database is flushed."""
    from cs_platform.asgi import application

    server = LiveServer(application).start()
    yield server
    server.stop()


@pytest.fixture
def browser(asgi_server: LiveServer) -> Iterator[Browser]:
    """Headless Chromium from Debian (Playwright downloads no browser here).

    Playwright's sync API leaves its event loop registered as running in this thread, and
    Django refuses ORM calls from a thread with a running loop: set up data before asking for
    this fixture, and read results through the page. It depends on `asgi_server` so that it
    closes first, before the database is flushed."""
    from playwright.sync_api import expect, sync_playwright

    # Assertions wait for the page; on a busy 2-core machine an answer can take seconds.
    expect.set_options(timeout=20_000)

    executable = shutil.which("chromium")
    if executable is None:
        raise RuntimeError(
            "Chromium is not installed: run `make test` (it installs Debian's chromium)"
        )
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
