"""Fixtures for the browser tests: Debian's Chromium driven by Playwright, a live server, API keys.

Chromium comes from the distribution (``apt-get install chromium``; the Makefile's test packages),
never from a browser download, and runs with the flags a closed network needs.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from ai_med_extract.config import Settings
from ai_med_extract.security.keyring import Keyring
from tests.conftest import _pg_execute, _pg_url

CHROMIUM = os.environ.get("AME_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
T = TypeVar("T")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


def off_the_loop(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn`` in a fresh thread: Playwright's sync API keeps an event loop running in this one,
    so code that calls ``asyncio.run`` must not run here once the browser has started."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(fn, *args).result()


@pytest.fixture(params=["postgresql"])
def database_url(request: pytest.FixtureRequest, postgres: str, pg_template: str) -> Iterator[str]:
    """The browser flows run on PostgreSQL only (the production database); one run each is enough."""
    name = f"ame_web_{uuid.uuid4().hex[:12]}"
    off_the_loop(_pg_execute, f"CREATE DATABASE {name} TEMPLATE {pg_template}")
    yield _pg_url(postgres, name)
    off_the_loop(_pg_execute, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="module")
def browser(pg_template: str) -> Iterator[object]:
    # Module scope: Playwright's sync API keeps an event loop running in this thread, which async
    # tests after the browser tests must not find. pg_template first: its migrations need the loop free.
    if shutil.which(CHROMIUM) is None and not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.console_errors = errors  # type: ignore[attr-defined]
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def shot() -> object:
    """``shot(page, name)`` saves a full-page screenshot under tests/artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)

    def take(page: object, name: str) -> Path:
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
        return path

    return take


def create_api_key(settings: Settings, role: str) -> str:
    """Create an API key in the server's database (own engine and loop) and return its token."""
    from ai_med_extract.db.engine import create_engine, create_sessionmaker
    from ai_med_extract.security.keys import KeyService
    from ai_med_extract.security.role import Role
    from ai_med_extract.storage.secrets import load_secrets

    async def work() -> str:
        engine = create_engine(settings.database)
        try:
            async with create_sessionmaker(engine)() as session, session.begin():
                service = KeyService(Keyring.from_secret(load_secrets(settings).secret_key))
                _, token = await service.create(session, name="browser-test", role=Role(role))
                return token
        finally:
            await engine.dispose()

    return off_the_loop(asyncio.run, work())
